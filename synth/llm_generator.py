"""The LLM generator: an OpenAI-compatible model plays the user and the assistant; the real tools answer.

ToolACE's self-guided dialog generation with three agents: the *user agent* gets a brief
built from a real user's task (the target's genres, era and a similar title, never the
target's title) and writes the request; the *assistant agent* sees the offered tool schemas
and acts through tool calls; the *tool agent* is the real registry (results are executed,
not imagined). The dialog kind is read from the resulting shape, and every dialog goes
through the same verification as the offline generator's, so the model's mistakes are
rejected, not trained on.
"""

from __future__ import annotations

from typing import Any

from recagent.agents.config import PolicyConfig
from recagent.agents.prompts import CHAT
from recagent.synth import phrasing as ph
from recagent.synth.builder import DialogBuilder, GenerationFailed
from recagent.synth.programmatic import OUT_OF_SCOPE, PLANS, GenRequest, ProgrammaticGenerator
from recagent.synth.sample import Sample
from recagent.synth.tool_pool import DOMAIN_NOUNS, OfferedTools
from recagent.synth.verify import infer_kind

USER_AGENT = (
    "You role-play a user of a {noun} recommender. Write only the user's next message, one or two sentences, "
    "in your own words. Never mention a title you were told to keep secret."
)
KIND_BRIEFS = {
    "single": "Ask for one thing that one tool call can answer.",
    "parallel": "Ask for two independent things in the same message.",
    "chain": "Ask for something that needs several steps (for example: find a {noun} you name, then similar ones, "
    "then rank them for you).",
    "clarify": "Ask for personalised recommendations but do not give your user id until you are asked for it.",
    "no_tool": "Ask for something a recommender cannot do: {topic}.",
}


class LLMGenerator:
    """Multi-agent dialog generation with an OpenAI-compatible model over the real tools."""

    name = "llm"

    def __init__(self, base: ProgrammaticGenerator, cfg: PolicyConfig, max_steps: int = 6, chat_model: Any = None):
        from recagent.agents.policies.openai_compat import openai_chat_model

        self.base, self.cfg, self.max_steps = base, cfg, max_steps
        self.model = chat_model or openai_chat_model(cfg)

    def brief(self, req: GenRequest, topic: str | None) -> str:
        """What the user agent knows: their taste, the target's attributes, the kind of request."""
        env = self.base.env
        cat = env.catalog
        noun = DOMAIN_NOUNS[req.domain][0]
        target = req.task.target
        liked = [ph.short_title(cat.titles[i]) for i in req.task.liked(3)]
        era = (
            ph.era_phrase(ph.decade(int(cat.years[target])), ph.decade(int(cat.years[target])) + 9, req.rng)
            if int(cat.years[target])
            else ""
        )
        secret = ph.short_title(cat.titles[target])
        return (
            f"You are user {req.task.user_id}. You liked: {', '.join(liked)}. You want a {noun} with genres "
            f"{', '.join(cat.genres[target]) or 'any'} {era}. Secret title (never say it): {secret}. "
            + KIND_BRIEFS[req.kind].format(noun=noun, topic=topic or "")
        )

    def _user_says(self, brief: str, history: list[dict[str, Any]], noun: str) -> str:
        from langchain_core.messages import HumanMessage, SystemMessage

        convo = "\n".join(
            f"{m['role'].upper()}: {m.get('content')}"
            for m in history
            if m.get("content") and m["role"] in ("user", "assistant")
        )
        prompt = brief + ("\nConversation so far:\n" + convo if convo else "")
        reply = self.model.invoke([SystemMessage(USER_AGENT.format(noun=noun)), HumanMessage(prompt)])
        text = str(reply.content).strip()
        if not text:
            raise GenerationFailed("the user agent wrote nothing")
        return text

    def generate(self, req: GenRequest) -> Sample:
        """One dialog: user agent request, assistant tool loop over real tools, answer; kind read from the shape."""
        from langchain_core.messages import convert_to_messages

        rng = req.rng
        _, cores, _ = rng.choice(PLANS[req.kind])
        topic = rng.choice(list(OUT_OF_SCOPE)) if req.kind == "no_tool" else None
        variants = self.base.offer(req, cores, topic)
        session = self.base.env.session()
        offered = OfferedTools(variants, self.base.registry_factory(session))
        b = DialogBuilder(offered, session.catalog, f"llm:{req.attempt}")
        noun = DOMAIN_NOUNS[req.domain][0]
        # like the agent at serving time, the assistant knows who it talks to, except when it must ask
        about = (
            ""
            if req.kind in ("clarify", "no_tool")
            else f" About the user: the user is user_id {req.task.user_id} of the dataset."
        )
        b.system(CHAT.format(dataset=self.base.dataset, user=about).replace("movie recommender", f"{noun} recommender"))
        brief = self.brief(req, topic)
        b.user(self._user_says(brief, b.messages, noun))
        assistant = self.model.bind_tools(offered.schemas())
        answered, asked = False, 0
        for _ in range(self.max_steps):
            ai = assistant.invoke(convert_to_messages([dict(m) for m in b.messages]))
            raw = ai.additional_kwargs.get("tool_calls") or []
            if raw:  # the model's own argument text: parsed and re-serialised, or kept (and rejected) if broken
                b.call_offered([(tc["function"]["name"], tc["function"]["arguments"]) for tc in raw], strict=False)
                continue
            if ai.tool_calls:
                b.call_offered([(tc["name"], tc["args"]) for tc in ai.tool_calls], strict=False)
                continue
            text = str(ai.content).strip()
            if not text:
                raise GenerationFailed("the assistant agent wrote nothing")
            b.say(text)
            if text.rstrip().endswith("?") and asked == 0 and req.kind == "clarify":
                asked += 1
                b.user(self._user_says(brief + " Answer the assistant's question.", b.messages, noun))
                continue
            answered = True
            break
        if not answered:
            raise GenerationFailed(f"no answer within {self.max_steps} assistant steps")
        sample = Sample(
            messages=b.messages,
            tools=offered.schemas(),
            kind=req.kind,
            split=req.split,
            user_id=req.task.user_id,
            target_item=session.catalog.ids[req.task.target],
            domain=req.domain,
            tool_variants={v.name: v.describe() for v in variants},
            attempt=req.attempt,
            generator=self.name,
            steps=[s.to_dict() for s in b.steps],
            extra={"model": self.cfg.model, "topic": topic, "asked_kind": req.kind},
        )
        sample.kind = infer_kind(sample)
        return sample

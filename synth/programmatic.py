"""The offline generator: catalog-grounded dialog plans played by a user, an assistant and the real tools.

Each *plan* is one way a conversation of a given kind can go (a single search, two
parallel lookups, look-up -> similar -> filter -> rank, a clarifying question before a
call, a refusal when no offered tool fits). The user side speaks from a :class:`UserTask`
(a real user's history and a held-out target described by its genres, era and a similar
title it never names); the assistant side acts only through tool calls whose arguments come
from the user's words and from earlier results; the tool side is the real tool registry.
A plan that cannot complete on real data (an empty filter result, a failed call) raises
:class:`GenerationFailed` and the attempt is dropped, never patched.

User turns are written the way people type them (:mod:`recagent.synth.phrasing`): many
whole-sentence frames per plan, indirect asks mapped to one genre ("I want to be scared" ->
Horror), counts as words ("a dozen" -> ``k=12``; no stated count -> no ``k``), ids in several
forms, titles typed loosely (checked with the real title lookup before use) and seeded casual
noise that never touches the ids, numbers and spans a call depends on. Besides single requests
there are negative constraints (``filter_items(exclude_genres=...)``), follow-ups whose second
call acts on the first result ("something older", "more like the second one", "any of those
without violence?", "just the three I'd like most") or needs no call ("fewer, just three"), and
chit-chat (greetings, small talk, out-of-scope asks). Follow-ups are previewed on the saved
candidate set, so they are only asked when they have an answer.

The first-call plans (:data:`FIRST_CALL_PLANS`, drawn per kind with :data:`FIRST_CALL_SHARE`) open
with decisions the base plans never make: ``rank_items`` / ``rank_by_preference`` over item ids the
user gives (for their user id, or for a history of ids they liked), ``similar_items`` and
``get_item`` straight on given ids ("more like movie 50", "what's #127?"), ``search_items`` with a
free-text mood or plot query ("something eerie", "films about a heist"), ``filter_items`` from year
limits said as constraints ("nothing before 1990", "nothing after the seventies", with or without a
genre and a "no horror"), and ``popular_items`` with no genre.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recagent.agents.genre_mentions import VIOLENT  # what "without violence" excludes: the grammar reads the same list
from recagent.agents.prompts import CHAT, LISTWISE, LISTWISE_REQUEST, listwise_answer
from recagent.synth import phrasing as ph
from recagent.synth.builder import DialogBuilder, GenerationFailed
from recagent.synth.sample import Sample
from recagent.synth.tasks import UserTask
from recagent.synth.tool_pool import DOMAIN_NOUNS, OfferedTools, ToolPool, ToolVariant
from recagent.tools.env import ToolEnv
from recagent.tools.result_text import ANSWER_SHOWS, answer_line, display_title
from recagent.tools.schemas import POOL_K
from recagent.tools.toolkit import ToolRegistry

SET_NAMES = ["picks", "shortlist", "recs", "pool", "matches", "cands", "similar", "mine"]
# A count the user did not state is never a coin flip: a call that builds a pool for a later step asks for
# POOL_K items and every other call leaves the count out (the tool default). A random unstated count is a
# gold argument the request cannot predict: it capped AST match and kept the SFT loss up. POOL_K lives with the
# tools' argument types because the call grammar admits it as a count nobody wrote.
OUT_OF_SCOPE: dict[str, list[str]] = {
    "tickets": [
        "Can you book two tickets for {t} tonight?",
        "Where is {t} showing near me this weekend?",
        "Get me seats for {t} on Friday.",
        "any cinemas playing {t} tonight?",
        "Reserve a ticket for {t}, please.",
    ],
    "reviews": [
        "What did the critics say about {t}?",
        "Show me reviews of {t}.",
        "Is {t} well reviewed?",
        "What's the Rotten Tomatoes score of {t}?",
        "Read me a review of {t}.",
    ],
    "watchlist": [
        "Add {t} to my watchlist.",
        "Please save {t} to my list for later.",
        "Put {t} on my to-watch list.",
        "remember {t} for me so I can watch it later",
        "Bookmark {t}.",
    ],
    "rating": [
        "Rate {t} five stars for me.",
        "I want to give {t} a 2 out of 5.",
        "Log a rating of 4 for {t}.",
        "Mark {t} as one I hated.",
        "Give {t} a thumbs up on my profile.",
    ],
    "streaming": [
        "Where can I stream {t}?",
        "Is {t} on any streaming service in Germany?",
        "Is {t} on Netflix?",
        "Which platform has {t} right now?",
        "can i watch {t} online for free?",
    ],
    "cast": [
        "Who starred in {t}?",
        "Who directed {t}?",
        "Who plays the lead in {t}?",
        "Who wrote the music for {t}?",
        "Was {t} directed by a woman?",
    ],
    "purchase": [
        "Buy me a copy of {t}.",
        "Order {t} for me, please.",
        "How much does {t} cost on DVD?",
        "Can I buy {t} here?",
        "Get me {t} on Blu-ray.",
    ],
    "weather": [
        "What's the weather like tomorrow?",
        "Will it rain this evening?",
        "Is it going to be sunny this weekend?",
        "How cold is it outside?",
    ],
    "translation": [
        "Translate 'good evening' into French.",
        "How do you say 'thank you' in Japanese?",
        "What does 'gracias' mean?",
        "Translate this into Spanish: where is the station?",
    ],
    "trivia": [
        "Who won the World Cup in 1998?",
        "What is the capital of Australia?",
        "How tall is Mount Everest?",
        "When did the Berlin Wall fall?",
    ],
    "math": [
        "What's 17 times 23?",
        "Can you solve 3x + 5 = 20 for me?",
        "What is the square root of 144?",
        "Convert 30 miles to kilometres.",
    ],
    "coding": [
        "Write me a Python function that reverses a string.",
        "How do I center a div in CSS?",
        "Fix my SQL query, please.",
        "Explain recursion to me.",
    ],
    "writing": [
        "Write me a poem about the sea.",
        "Can you write a short story for my daughter?",
        "Help me write an email to my landlord.",
        "Write a haiku about autumn.",
        "Draft a birthday message for my mum.",
        "Compose a limerick about a dog.",
    ],
    "travel": [
        "Book me a flight to Lisbon.",
        "Find a hotel in Rome for next week.",
        "What's the best way to get to the airport?",
        "Any good restaurants near me?",
    ],
}

# -- phrase banks per intent (each plan draws its request from at least ~15 whole-sentence frames) -------------------

POPULAR_NP = [
    "the most popular {g} {n}",
    "the top {g} {n}",
    "popular {g} {n}",
    "the best-known {g} {n}",
    "{g} {n} everyone has {ved}",
    "crowd-pleasing {g} {n}",
    "the biggest {g} hits",
    "the most {ved} {g} {n}",
    "well-known {g} {n}",
    "the {g} {n} most people like",
    "the {g} {n} with the most fans",
]
POPULAR_NP_K = [
    "the {k} most popular {g} {n}",
    "top {k} {g} {n}",
    "{k} popular {g} {n}",
    "the {k} biggest {g} hits",
    "{k} {g} {n} everyone has {ved}",
    "the top {k} {g} {n}",
    "{k} of the most {ved} {g} {n}",
]
POPULAR_Q = [
    "What are {np}?",
    "Which are {np}?",
    "List {np}, please.",
    "What's popular in {gn}?",
    "Most popular {g} {n}?",
    "What do most people {verb} in {gn}?",
    "Which {g} {n} are the most popular?",
    "what {g} {n} does everyone like",
    "I want the {g} {n} everybody talks about.",
    "Which {g} {n} have the most fans?",
    "Show me {np}.",
    "What {g} {n} are people {ving} the most?",
]
POPULAR_INDIRECT = [
    "What's popular for that?",
    "What do most people {verb} then?",
    "Show me the most popular ones.",
    "What are the crowd favourites?",
    "Which popular {n} fit?",
    "What does everyone {verb} for that?",
]
POPULAR_INDIRECT_K = [
    "Top {k} popular picks?",
    "What are the {k} most popular ones?",
    "Give me the {k} crowd favourites.",
]
PERSONAL_NP = [
    "some {n} for me",
    "my next {s}",
    "{n} I would enjoy",
    "something I'd like",
    "{n} picked for my taste",
    "personal recommendations",
    "{n} based on my history",
    "{n} based on what I've {ved}",
    "something new to {verb}",
    "{n} tailored to me",
    "recommendations for me",
    "a {s} I'd love",
    "{n} that match my taste",
    "good {n} for someone like me",
]
PERSONAL_NP_K = [
    "{k} {n} for me",
    "{k} {n} I'd enjoy",
    "{k} personal picks",
    "{k} recommendations for me",
    "my top {k} {n}",
    "{k} {n} picked for my taste",
    "{k} {n} you think I'd like",
]
PERSONAL_Q = [
    "What should I {verb} next?",
    "What would I like?",
    "Surprise me with something I'd enjoy.",
    "Based on my history, what should I {verb}?",
    "What do you think I'd like?",
    "Got any recommendations for me?",
    "I'm bored, what should I {verb}?",
    "What's a good {s} for me tonight?",
    "recommend me something",
    "Any picks for me?",
    "What would you recommend for me?",
    "Pick something for me to {verb}.",
    "Anything I'd enjoy?",
    "what should i {verb}",
    "Give me something to {verb}.",
    "I don't know what to {verb}. Help?",
]
PERSONAL_GENRE_NP = [
    "{g} {n} picked for my taste",
    "{g} {n} I'd like",
    "{g} {n} that fit my taste",
    "{g} picks based on what I've {ved}",
    "{g} {n} for me specifically",
    "personal {g} recommendations",
    "{g} {n} that suit me",
    "the {g} {n} you think I'd enjoy",
]
PERSONAL_GENRE_Q = [
    "I'm in a {g} mood. What would I like?",
    "Which {g} {n} would I enjoy?",
    "Given my taste, any {g} {n}?",
    "What {g} {s} should I {verb} next?",
    "Based on my history, anything {g}?",
    "Got {g} {n} that suit me?",
    "Any {g} {n} I'd like?",
    "What's a {g} {s} I would enjoy?",
]
INFO_Q = [
    "Tell me about {t}.",
    "What kind of {s} is {t}?",
    "When did {t} come out?",
    "What genre is {t}?",
    "What year is {t} from?",
    "Do you know {t}?",
    "What's {t}?",
    "info on {t}",
    "{t} - what is it?",
    "How popular is {t}?",
    "Is {t} old or new?",
    "Can you look up {t}?",
    "Look up {t} for me.",
    "What do you have on {t}?",
    "Give me the details of {t}.",
    "Quick one: {t}, which year?",
    "what's the genre of {t}",
    "Is {t} in your catalog?",
    "Find {t} for me.",
    "Have you heard of {t}?",
    "Do you have {t}?",
    "Have you got {t} in there?",
    "Is {t} available here?",
]
TWO_ITEMS_Q = [
    "Which is older, {a} or {b}?",
    "What genres are {a} and {b}?",
    "Tell me about {a} and {b}.",
    "Compare {a} and {b} for me.",
    "{a} vs {b}: which came out first?",
    "Look up {a} and {b}.",
    "What years are {a} and {b} from?",
    "Are {a} and {b} the same genre?",
    "Can you check {a} and also {b}?",
    "Details on {a} and {b}, please.",
    "I can't remember: is {a} newer than {b}?",
    "Info on two {n}: {a} and {b}.",
    "What do you know about {a} and {b}?",
    "Which is more popular, {a} or {b}?",
    "{a} and {b} - what kind of {n} are they?",
    "Quick check on {a} and {b}?",
]
HISTORY_Q_K = [
    "What were the last {k} {n} I {ved}?",
    "Remind me of my {k} most recent {n}.",
    "Show my last {k} {n}.",
    "What did I {verb} recently? Last {k}, please.",
    "List the {k} {n} I {ved} most recently.",
    "my recent history, {k} items",
    "Can you pull up my last {k} {n}?",
    "What have I been {ving} lately? Show {k}.",
    "Which {n} did I {verb} last? The last {k}.",
    "I forgot what I {ved}. The last {k}?",
    "Show me my {k} latest {n}.",
    "What's in my history? Just the last {k}.",
    "Recap my last {k} {n}, please.",
    "My {k} most recent {n}?",
    "Look at my history: what were the last {k}?",
]
HISTORY_Q = [
    "What {n} did I {verb} last?",
    "Show me my recent history.",
    "What have I {ved} lately?",
    "Can you see my history?",
    "What was the last thing I {ved}?",
    "Pull up my recent {n}.",
    "What did I {verb} recently?",
    "my history pls",
    "Remind me what I {ved} last.",
    "Which {n} have I {ved} recently?",
    "Show my history.",
    "What's my recent activity?",
    "What have I been {ving}?",
    "List my latest {n}.",
    "Can you check what I {ved} recently?",
    "Which {n} have I rated?",
    "List the {n} I've rated.",
    "Show me everything I {ved}.",
    "What's on my record?",
]
ASK_ID = [
    "Sure! What is your user id?",
    "Happy to. Which user id are you?",
    "I can do that with your history. What's your user id?",
    "Sure, what's your user id?",
    "Which user id should I look up?",
    "Of course. What's your id?",
    "I need your user id for that. What is it?",
]
MODEL_NAMES = {
    "sasrec": ["sasrec", "SASRec"],
    "bpr": ["bpr", "BPR", "BPR-MF"],
    "itemknn": ["itemknn", "ItemKNN", "item-kNN"],
    "pop": ["pop", "popularity"],
}
MODELS_Q = [
    "Compare what the {a} and {b} recommenders suggest for me.",
    "What would {a} recommend me, and what would {b}?",
    "Show me {a} vs {b} recommendations.",
    "Run both {a} and {b} for me.",
    "I'm curious how {a} and {b} differ for me.",
    "Give me picks from {a} and from {b}.",
    "{a} or {b}: what does each suggest for me?",
    "Let's compare the {a} model with the {b} model on my profile.",
    "Side by side: {a} and {b} recommendations for me.",
    "Which {n} would {a} pick for me? And {b}?",
    "Try the {a} and the {b} recommender for me.",
    "What do {a} and {b} each think I'd like?",
    "I want to see {a} results next to {b} results.",
    "Can you get recommendations from both {a} and {b}?",
    "compare {a} with {b} for my account",
    "Use {a} and {b} and show me both lists.",
]
SIMILAR_NP = [
    "{n} like {t}",
    "{n} similar to {t}",
    "something like {t}",
    "more {n} like {t}",
    "{n} in the vein of {t}",
    "anything similar to {t}",
    "{n} for someone who loved {t}",
    "{n} that feel like {t}",
]
SIMILAR_Q = [
    "I loved {t}. What else would I like?",
    "{t} was great - anything similar?",
    "If I liked {t}, what should I {verb} next?",
    "Just finished {t} and loved it. More like that?",
    "People who liked {t} also liked what?",
    "I really enjoyed {t}; recommend something along those lines.",
    "What's similar to {t}?",
    "Anything like {t}?",
    "{t} is my favourite. Similar {n}?",
    "more like {t} pls",
]
RANK_CLAUSE = [
    ", ranked for me",
    ", sorted by what I'd like",
    ", best matches for me first",
    ", ordered for my taste",
    " - and rank them for me",
    ", ranked by how much I'd enjoy them",
]
HISTORY_SIMILAR_NP = [
    "more {n} like the ones I {ved} recently",
    "something like what I've been {ving} lately",
    "{n} similar to my recent favourites",
    "more of what I've been into lately",
    "{n} like my recent top-rated ones",
    "{n} in line with my latest favourites",
]
HISTORY_SIMILAR_Q = [
    "Based on my last few {n}, what else?",
    "I liked my recent {n}, give me more of that.",
    "Look at what I {ved} recently and find similar ones.",
    "What's similar to the stuff I've been {ving}?",
    "I've enjoyed my recent {n}. More like those?",
    "Find me more like my latest favourites.",
    "Check my recent history and suggest similar {n}.",
]
HISTORY_OPEN_NP = [
    "{n} based on what I've {ved} before",
    "something based on my history",
    "recommendations from my past {n}",
    "{n} I'd like given my history",
    "personal picks",
    "{n} that match my taste",
    "something I'd like",
]
TITLE_OPEN = [
    "{n} similar to one I loved",
    "something like a {s} I really liked",
    "more like my favourite {s}",
    "{n} like one I {ved} last month",
    "something similar to a {s} I enjoyed",
]
TITLE_OPEN_Q = [
    "I loved a {s} recently and want similar ones.",
    "There's this {s} I adore. Can you find similar ones?",
    "Can you find stuff like a {s} I liked?",
    "I want more like a {s} I enjoyed.",
]
ASK_TITLE = [
    "Which {s} was it?",
    "Sure, which {s} did you love?",
    "Tell me the title of the {s} and I'll find similar ones.",
    "Happy to! What's the title?",
    "Which one do you mean?",
    "Sure. What's it called?",
]
TITLE_REPLY = [
    "{t}",
    "It was {t}.",
    "{t}, definitely.",
    "it's called {t}",
    "{t} - loved it",
    "The one I mean is {t}.",
    "Oh, {t}!",
    "{t}, I think",
    "{t} of course",
    "It's {t}.",
]
NARROW_Q = [
    "Hmm, anything more {g}?",
    "Can you narrow it to {g} ones?",
    "Only {g} {n}, please.",
    "Just the {g} ones?",
    "Any {g} among them?",
    "I'm more in a {g} mood actually.",
    "What about something {g}?",
    "Which of those are {g}?",
    "Filter those to {g}.",
    "Can it be {g}?",
    "Make it {g}.",
    "Any of your picks {g}?",
    "Prefer {g}. Anything?",
]
EXCLUDE_Q = [
    "Any of those without {x}?",
    "No {x}, please.",
    "Can you drop the {x}?",
    "Anything but {x}?",
    "Leave out {x}.",
    "Skip the {x} ones.",
    "I'm not into {x}. Others?",
    "Same but no {x}?",
    "Remove anything with {x}.",
    "Hmm, I don't like {x}. Can you filter that out?",
    "Not {x}, please.",
]
OLDER_Q = [
    "Something older?",
    "Anything older than those?",
    "These are too recent. Older ones?",
    "Can you go further back?",
    "Got anything older?",
    "Older ones, please.",
    "I prefer older stuff. Anything from before those?",
    "hmm all too new, something older",
]
OLDER_Q_Y = [
    "Anything from before {y}?",
    "Only ones released before {y}, please.",
    "Something older, before {y} ideally.",
    "Got any from before {y}?",
]
NEWER_Q = [
    "Something more recent?",
    "Anything newer?",
    "Those feel old. Newer ones?",
    "Got anything more recent than that?",
    "Newer ones, please.",
]
ORDINALS = ["first", "second", "third", "fourth", "fifth"]
LIKE_NTH_Q = [
    "More like the {o} one.",
    "I like the {o} one, anything similar?",
    "The {o} one looks great. More like that?",
    "Can you find more like number {j}?",
    "More like #{j}?",
    "ooh the {o} one! similar ones?",
    "Give me more in the style of the {o} one.",
    "Something like the {o} one, please.",
]
LIKE_TITLE_Q = [
    "More like {t}, please.",
    "{t} sounds good. Anything similar?",
    "I've seen {t} and loved it. More like that?",
    "Similar to {t}?",
]
FEWER_Q = [
    "Too many! Just {k}.",
    "Fewer, just {k}.",
    "Can you cut that down to {k}?",
    "Only the top {k}, please.",
    "just {k} pls",
    "That's a lot. Give me your top {k}.",
    "Narrow it down to {k}?",
    "Shorter list: {k}.",
    "Just the best {k}, please.",
    "I only have time for {k}. Which ones?",
]
FEWER_MINE_Q = [
    "Fewer, just the {k} I'd like most.",
    "Which {k} of those would I like best?",
    "Too many. Pick the best {k} for me.",
    "Rank those for me and keep {k}.",
    "Of those, which {k} suit my taste?",
    "Just {k}, the ones that fit me best.",
    "Can you narrow that to the {k} I'd enjoy most?",
    "Which {k} would you pick for me?",
]
UNSEEN = [
    " that I haven't {ved}",
    " I haven't {ved} yet",
    " that are new to me",
    " I haven't {ved} before",
    " that I haven't {ved} already",
]
UNSEEN_SENTENCE = [" Nothing I've {ved} already.", " Only ones I haven't {ved}.", " Skip what I've already {ved}."]
SOFT_AVOID = [
    " Ideally not too much {x}.",
    " Less {x} if possible.",
    " Not a big fan of {x} though.",
    " Preferably light on {x}.",
]
NEGATIVE_FRAMES = [
    "{ask} But no {x}.",
    "{ask} Anything but {x}.",
    "{ask} No {x}, please!",
    "{ask} Not {x} though.",
    "No {x}, please. {ask}",
    "I don't want {x}. {ask}",
    "I can't stand {x}. {ask}",
    "{ask} Skip the {x}.",
    "{ask} Nothing with {x}.",
    "{ask} I'm not in the mood for {x}.",
]
NEGATIVE_ONLY = [
    "Anything but {x}{era}.",
    "Something without {x}{era}?",
    "Give me anything{era} that isn't {x}.",
    "No {x}, just something good{era}.",
    "I want {n}{era}, but no {x}.",
    "Anything{era}, as long as it's not {x}.",
]
GREETING = [
    "Hi! What can you do?",
    "Hello, how can you help me?",
    "What are you able to do for me?",
    "hey",
    "hi there",
    "Good morning!",
    "hello? anyone there?",
    "What is this?",
    "How does this work?",
    "what can i ask you",
    "Hey, what are you?",
    "Hi, I'm new here. What do you do?",
    "yo",
    "Hello! What kind of things can you help with?",
    "Can you explain what you do?",
    "What are your capabilities?",
    "help",
    "Morning! How do I use you?",
    "Hi, who are you?",
    "Hey there, what's this app for?",
    "hiya",
    "what's up?",
    "sup",
    "Good evening! What do you offer?",
    "What kind of questions can you answer?",
    "Can you tell me what you're for?",
    "hello, what is this service?",
    "Hi :) what do you do",
    "Hey! First time here. What can I ask?",
    "Hello there, what are my options?",
]
# small talk that needs no tool: (user phrasings, replies); "{n}"/"{s}" are the domain nouns, "{g}"/"{ga}"/"{g2}"
# genres (noun, word before a noun, another genre), "{d}" a decade, "{t}" a title the user liked
SMALL_TALK: list[tuple[list[str], list[str]]] = [
    (
        ["How are you today?", "how's it going?", "Hey, how are you doing?", "You doing ok?"],
        [
            "I'm doing well, thanks for asking! Want me to find you a {s}?",
            "All good here, thanks! Shall I suggest some {n}?",
        ],
    ),
    (
        ["Thanks!", "thank you so much", "Thanks for the help earlier.", "cheers"],
        ["You're welcome! Ask me any time you want {n}.", "Happy to help. Want more {n}?"],
    ),
    (
        ["Do you like {n}?", "What's your favourite {s}?", "Do you have a favourite {s}?", "Which {n} do you love?"],
        [
            "I don't have tastes of my own, but I love helping people find {n}. What do you enjoy?",
            "No favourites here, but tell me what you like and I'll find {n} for you.",
        ],
    ),
    (
        ["Are you a robot?", "Are you human?", "Am I talking to a real person?", "are u a bot"],
        [
            "I'm an AI assistant that recommends {n} with a few tools. What are you in the mood for?",
            "I'm a recommender assistant, not a person. Want some {n}?",
        ],
    ),
    (
        ["Tell me a joke.", "Say something funny.", "Make me laugh with a joke."],
        [
            "I'm better at finding {n} than telling jokes. Shall I look for some comedies?",
            "Jokes aren't my strength, but I can find you something funny. Want that?",
        ],
    ),
    (
        ["Good night!", "bye", "See you later!", "Gotta go, bye."],
        ["Goodbye! Come back when you want more {n}.", "Bye! Enjoy your evening."],
    ),
    (
        ["ok cool", "nice", "never mind", "lol", "hmm ok"],
        ["No problem. Let me know if you want some {n}.", "Sure. I'm here if you need {n}."],
    ),
    (
        ["What's your name?", "Who are you?", "Do you have a name?"],
        [
            "I'm your {s} recommendation assistant. What would you like to find?",
            "I'm the recommender assistant here. Looking for {n}?",
        ],
    ),
    (
        ["Can we just chat for a bit?", "I just want to talk.", "Nothing specific, just saying hi."],
        [
            "Sure, happy to chat! When you want {n}, just tell me what you like.",
            "Hi! Whenever you feel like some {n}, I can help.",
        ],
    ),
    # questions about {n} that name a genre ({g} as a noun, {ga} as a word before a noun), a decade or a title but ask
    # for no items: a genre or a year in a request is no call by itself
    (
        [
            "What counts as {g}, anyway?",
            "what does {g} even mean as a label",
            "How would you describe {g} to a friend?",
            "What makes a {s} {ga}, exactly?",
            "Is there a real difference between {g} and {g2}?",
            "explain {g} to me like I'm five",
            "Where does the label {g} come from?",
        ],
        [
            "It's a label for a kind of {s}; my tools can't explain it in depth, but I can find you some {ga} {n} to "
            "try. Want that?",
            "Genre labels are loose, and my tools only find {n}. Shall I look up some {ga} ones for you?",
        ],
    ),
    (
        [
            "Were the {d} a good time for {n}?",
            "Are people too hard on {g}, honestly?",
            "Which decade had the best {n}, in your opinion?",
            "do you reckon {n} were better in the {d}?",
            "Are {ga} {n} getting worse these days?",
            "Honestly, is {t} as good as people say?",
            "What do you think of {t}?",
        ],
        [
            "I don't have opinions of my own, but I can find well-liked {n} from any decade or genre. Want some?",
            "Tastes differ, and I have none of my own. Tell me what you like and I'll find {n} to match.",
        ],
    ),
    (
        [
            "Tell me something interesting about {n}.",
            "Got any trivia about {t}?",
            "Share a random fact about {ga} {n}.",
            "what's the longest {s} ever",
            "How many {n} come out each year?",
            "Give me a fun fact, anything about {n}.",
        ],
        [
            "I don't have trivia to hand: my tools find {n} in this catalog. Shall I look some up for you?",
            "Facts like that are outside what my tools cover, sorry. I can recommend {n} though. Want some?",
        ],
    ),
    (
        [
            "How do I delete my profile?",
            "Do you remember what I tell you?",
            "Is my data shared with anyone?",
            "Can I switch the language to German?",
            "Does this have a dark mode?",
            "Can I use this on my phone?",
            "Is this service free?",
            "how do I log out",
        ],
        [
            "I can't help with accounts or settings here; I only recommend {n}. Want some suggestions?",
            "That's outside what I can answer, sorry. I'm here to recommend {n} when you want them.",
        ],
    ),
    (
        [
            "Any podcasts worth a listen?",
            "Recommend me a video game.",
            "Suggest a board game for four people.",
            "What should I cook for dinner?",
            "Which phone should I buy?",
            "Know a good app for learning guitar?",
        ],
        [
            "Sorry, I only know {n} from this catalog, so I can't help with that. Want some {n} instead?",
            "That's outside my catalog: I recommend {n}. Shall I suggest some?",
        ],
    ),
]

# -- first decisions the base plans never open with: ids the user gives, moods and plots, year limits, overall hits --

RANK_IDS_Q = [
    "Rank {r} for me.",
    "Which of {r} would I like most?",
    "I'm choosing between {r}. Which suits me best?",
    "Order {r} by how much I'd enjoy them.",
    "Can you sort {r} for my taste?",
    "Out of {r}, which should I {verb} first?",
    "Help me choose between {r}.",
    "Put {r} in order for me, best first.",
    "I've narrowed it down to {r}. Rank them for me?",
    "{R}: which is the best fit for me?",
    "I'm considering {r}. Which would you pick for me?",
    "How would you rank {r} for me?",
    "Of {r}, which one matches my taste?",
    "sort {r} by what i'd like",
    "Which one first: {r}?",
]
RANK_HISTORY_Q = [
    "I loved {h}. Which of {r} should I {verb} next?",
    "Given that I enjoyed {h}, rank {r} for me.",
    "Big fan of {h}. Order {r} by what I'd like.",
    "My favourites: {h}. Which of {r} fits best?",
    "I really liked {h}; how would you rank {r} for someone like me?",
    "Knowing I liked {h}, which of {r} would I enjoy most?",
    "Based on {h}, which one of {r} should I pick?",
    "I had a great time with {h}. Sort {r} for me.",
]
RANK_PREFER_Q = [
    "Which of {r} would suit me? I'm in a {g} mood.",
    "Rank {r} for me, favouring {g} ones.",
    "Of {r}, which fit me best? Preferably {g}.",
    "Sort {r} for my taste, with {g} ones first.",
    "I'm torn between {r}. I lean towards {g} tonight - which first?",
    "Rank {r} for me; I feel like something {g}.",
]
RANK_AVOID_Q = [
    "Rank {r} for me, but I'm not in the mood for {x}.",
    "Which of {r} would I like? Ideally not {x}.",
    "Sort {r} for my taste and push the {x} ones down.",
    "Of {r}, which fit me best? Less {x}, please.",
]
RANK_TOP = [" Just the top {k}.", " Only the best {k}.", " Keep the top {k}.", " Top {k} is enough."]
RANK_LEADS = [
    "Ranked for your taste:",
    "Here they are, best fit first:",
    "In order of how much you'd likely enjoy them:",
    "For you, I'd go in this order:",
]
SIMILAR_IDS_Q = [
    "More like {r}, please.",
    "I loved {r}. Anything similar?",
    "Find me something similar to {r}.",
    "What's like {r}?",
    "Anything in the same vein as {r}?",
    "I enjoyed {r} a lot. What else would I like?",
    "Recommend {n} similar to {r}.",
    "Give me {n} like {r}.",
    "{R} - got anything similar?",
    "Similar {n} to {r}?",
    "If I liked {r}, what should I {verb} next?",
    "Show me {n} that people who liked {r} also liked.",
    "something like {r} pls",
    "Stuff like {r}?",
    "Any {n} similar to {r}?",
    "anything along the lines of {r}",
    "I'm after more {n} like {r}.",
]
INFO_ID_Q = [
    "What's {r}?",
    "Tell me about {r}.",
    "What is {r} called?",
    "Which {s} is {r}?",
    "What year is {r} from?",
    "What genre is {r}?",
    "Look up {r}, please.",
    "Details on {r}?",
    "{R} - what is it?",
    "info on {r} pls",
    "I saw {r} in a list. What is it?",
    "How popular is {r}?",
    "What do you have on {r}?",
    "Can you check {r} for me?",
    "Is {r} old or new?",
]
LIKE_IT_Q = [
    "Anything similar?",
    "More like that one?",
    "Sounds good. Anything like it?",
    "Find me similar ones.",
    "Got more like this?",
    "Nice, what else is like it?",
]
POPULAR_ALL_Q = [
    "What's popular?",
    "What are the most popular {n} overall?",
    "Show me the all-time favourites.",
    "What are the biggest hits in your catalog?",
    "Which {n} does everyone love, any genre?",
    "What {n} do most people {verb}?",
    "Give me the crowd favourites, any genre.",
    "What's the most {ved} {s} you have?",
    "Which {n} have the most fans overall?",
    "I just want the big ones everyone knows.",
    "Genre doesn't matter - what's most popular?",
    "What are people {ving} the most?",
    "top {n} overall?",
    "List the most popular {n}, please.",
    "What's trending?",
    "What's hot at the moment?",
    "What is everyone {ving} these days?",
    "what's big right now",
    "Which {n} is everybody talking about?",
    "Show me the trending {n}.",
    "what are the hits lately",
]
POPULAR_ALL_K = [
    "What are {k} of the most popular {n} overall?",
    "Top {k} {n}, any genre.",
    "Give me {k} of the biggest hits.",
    "List {k} of the most {ved} {n}, please.",
    "Show me {k} crowd favourites, any genre.",
    "{k} trending {n}, please.",
    "What are the {k} hottest {n} at the moment?",
]
YEAR_ASK_FRAMES = ["{ask} {C}.", "{ask} But {c}.", "{ask} Oh, and {c}, please.", "{C}. {ask}", "{ask} One thing: {c}."]
YEAR_ONLY_FRAMES = [
    "Any {s} is fine, but {c}.",
    "Something good, {c}.",
    "Recommend me some {n} - {c}.",
    "What can you find? {C}.",
    "I'm open to anything, {c}.",
    "{C}, otherwise surprise me.",
    "Give me {n}, {c}.",
    "Suggest a {s}. {C}.",
    "Looking for {n}, {c}.",
    "Any genre, {c}.",
]
NO_GENRE_CLAUSE = ["no {x}", "nothing with {x}", "no {x} at all"]
PLOT_NP = [
    "{n} about {x}",
    "a {s} about {x}",
    "something about {x}",
    "a story about {x}",
    "{n} involving {x}",
    "{n} with {y}",
    "a {s} with {y}",
    "something with {y} in it",
    "{n} that revolve around {x}",
    "a good {s} about {x}",
]
PLOT_Q = [
    "Got any {n} about {x}?",
    "Is there a {s} about {x}?",
    "What have you got about {x}?",
    "Any good {n} with {y}?",
    "I'm really into stories about {x}. Suggestions?",
    "Do you have anything with {y}?",
    "Which {n} deal with {x}?",
    "I'm looking for a plot with {y}.",
    "Recommend a {s} where the story is about {x}.",
    "Know a good {s} about {x}?",
    "{X}: any {n} like that?",
    "Anything about {x}? That's my thing.",
]
MOOD_NP = [
    "something {a}",
    "{aa} {s}",
    "{a} {n}",
    "anything {a}",
    "a really {a} {s}",
    "something {a} to {verb} tonight",
    "a properly {a} {s}",
    "{n} that feel {a}",
]
MOOD_Q = [
    "I'm in the mood for something {a}.",
    "What's a good {a} {s}?",
    "Got anything {a}?",
    "Feeling like {aa} {s} tonight. Ideas?",
    "I want something {a}. What do you have?",
    "Any {a} {n} you'd suggest?",
    "Something {a}, please.",
    "Which {n} are really {a}?",
    "Need something {a} right now.",
]
PERSONAL_TAIL = [
    " Ones that fit my taste, please.",
    " Rank them for me.",
    " Pick the ones I'd like best.",
    " Sorted by what I'd enjoy.",
    " Tailored to me, ideally.",
]

FOLLOW_LEADS = ["Here you go:", "Sure, here they are:", "Done:", "Got it. These fit:", "Okay, here's the updated list:"]


@dataclass
class PlanContext:
    """What a plan works with: the task, the builder, the offered tools and a seeded RNG."""

    task: UserTask
    env: ToolEnv
    b: DialogBuilder
    rng: random.Random
    domain: str
    user_known: bool  # the system prompt names the user
    noun: str = ""
    nouns: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.noun, self.nouns = DOMAIN_NOUNS[self.domain]
        self.verb, self.ved, self.ving = ph.verbs(self.domain)
        self.uid_given = self.user_known

    # -- target attributes ------------------------------------------------------------------------------------------

    @property
    def catalog(self):
        return self.env.catalog

    def target_genres(self, n: int = 2) -> list[str]:
        genres = list(self.catalog.genres[self.task.target]) or ["Drama"]
        return self.rng.sample(genres, min(n, len(genres)))

    def target_era(self) -> tuple[int | None, int | None]:
        year = int(self.catalog.years[self.task.target])
        if not year:
            return None, None
        style = self.rng.random()
        d = ph.decade(year)
        if style < 0.6:
            return d, d + 9
        return (d, None) if style < 0.8 else (None, d + 9)

    def similar_title(self) -> int:
        """The liked history item sharing most genres with the target (a reference the user can name)."""
        target = set(self.catalog.genres[self.task.target])
        liked = self.task.liked(15) or list(self.task.history[-5:])
        return max(liked, key=lambda i: (len(target & set(self.catalog.genres[i])), -liked.index(i)))

    def title(self, i: int) -> str:
        return ph.short_title(self.catalog.titles[i])

    def typed_title(self, i: int) -> str:
        """The title of item ``i`` as the user types it (no article, lower case, a typo, a year...), checked with the
        real title lookup: a variant the tool would not resolve to item ``i`` is never used."""
        from recagent.tools.lookup_tools import GetItemArgs, get_item

        exact = self.title(i)
        if self.rng.random() < 0.4:
            return exact
        target_title = self.title(self.task.target).lower()
        year = int(self.catalog.years[i]) or None
        for v in ph.title_variants(self.catalog.titles[i], year, self.rng)[:-1]:
            if target_title in v.lower():
                continue
            try:
                if get_item(self.env, GetItemArgs(title=v)).item.item_id == self.catalog.ids[i]:
                    return v
            except Exception:  # no match at all: try the next variant
                continue
        return exact

    def candidate_items(self, n: int, top: int = 400) -> list[int]:
        """``n`` well-known items the user has not seen, about half sharing a genre with the target: a list the user
        may hold ids of. Never the target, never an item this user must not be answered with."""
        seen = set(self.env.seen(self.task.user).tolist())
        bad = seen | set(self.task.forbidden) | {self.task.target}
        order = sorted(range(len(self.catalog.ids)), key=lambda i: (-int(self.env.popularity[i]), i))[:top]
        pool = [i for i in order if i not in bad]
        target = set(self.catalog.genres[self.task.target])
        near = [i for i in pool if target & set(self.catalog.genres[i])]
        if len(pool) < n:
            raise GenerationFailed("too few unseen popular items")
        chosen = self.rng.sample(near, min(len(near), (n + 1) // 2))
        chosen += self.rng.sample([i for i in pool if i not in chosen], n - len(chosen))
        self.rng.shuffle(chosen)
        return chosen

    def liked_items(self, n: int) -> list[int]:
        """``n`` of the user's best-rated recent items (what they would point at by id), never the target."""
        liked = [i for i in dict.fromkeys(self.task.liked(8)) if i != self.task.target]
        if len(liked) < n:
            raise GenerationFailed(f"needs {n} liked items")
        return self.rng.sample(liked, n)

    def refs(self, items: list[int]) -> str:
        """The ids of internal ``items`` as the user types them ('movie 127', 'films 12, 100 and 7')."""
        return ph.item_refs([self.catalog.ids[i] for i in items], self.noun, self.nouns, self.rng)

    def k(self) -> int:
        return self.rng.choice([3, 5, 5, 5, 8, 10])

    def stated_k(self, p: float = 0.4) -> tuple[int | None, str]:
        """(k, how the user writes it) when the user states a count, else (None, '') and the call leaves k out."""
        if self.rng.random() >= p:
            return None, ""
        k = self.rng.choice(ph.STATED_K)
        return k, ph.number(k, self.rng)

    def set_name(self) -> str:
        return self.rng.choice(SET_NAMES)

    def fmt(self, text: str, **slots: Any) -> str:
        """Fill the domain slots ({n} {s} {verb} {ved} {ving}) and any others."""
        return text.format(n=self.nouns, s=self.noun, verb=self.verb, ved=self.ved, ving=self.ving, **slots)

    def pick_frame(self, frames: list[str], **slots: Any) -> str:
        return self.fmt(self.rng.choice(frames), **slots)

    # -- user turns -------------------------------------------------------------------------------------------------

    def user(self, text: str, keep: tuple[str, ...] | list[str] = ()) -> None:
        """A user turn, casually typed now and then (ids, numbers and ``keep`` spans are never altered)."""
        self.b.user(ph.noisy(text.strip(), self.rng, keep))

    def with_uid(self, text: str, force: bool = False) -> str:
        """``text`` with the user's id mentioned (before or after) when the system prompt does not name the user."""
        if self.uid_given and not force:
            return text
        if self.user_known:
            return text
        self.uid_given = True
        u = self.task.user_id
        if self.rng.random() < 0.6:
            return ph.uid_mention(u, self.rng) + text
        return text.rstrip() + ph.uid_mention(u, self.rng, suffix=True)

    def dress(self, text: str, asks: bool = True) -> str:
        """An opener and a closer around a request, sometimes (closers like 'Surprise me.' only when it ``asks`` for picks)."""
        opener = self.rng.choice(ph.OPENERS)
        if opener.endswith((", ", "so ")) and not re.match(r"I\b", text):
            text = text[:1].lower() + text[1:]
        return (opener + text + self.rng.choice(ph.CLOSERS if asks else ph.PLAIN_CLOSERS)).strip()

    def attr_np(
        self,
        genres: list[str],
        joiner: str = " or ",
        lo: int | None = None,
        hi: int | None = None,
        count: str = "",
        extra: str = "",
    ) -> str:
        """A noun phrase for wanted attributes: 'some 90s comedies', 'five comedy or romantic films released before 1980'."""
        rng = self.rng
        words = [ph.genre_word(g, rng) for g in genres]
        det = f"{count} " if count else rng.choice(["some ", "a few ", "", "good ", "some good ", ""])
        era_pre = ph.era_adjective(lo, hi, rng) if rng.random() < 0.35 else None
        g0 = genres[0]
        plural_ok = (
            len(genres) == 1
            and g0 in ph.GENRE_PLURALS
            and (g0 not in ph.MOVIE_ONLY_PLURALS or self.domain in ("movies", "films"))
        )
        if plural_ok and rng.random() < 0.35:
            core = ph.GENRE_PLURALS[g0]
        elif not count and rng.random() < 0.15:
            det, core = "", f"{article(words[0])} {joiner.join(words)} {self.noun}"
            if era_pre:
                core, era_pre = f"{article(era_pre)} {era_pre} {joiner.join(words)} {self.noun}", None
        else:
            core = f"{joiner.join(words)} {self.nouns}"
        if era_pre:
            return f"{det}{era_pre} {core}{extra}"
        return f"{det}{core} {ph.era_phrase(lo, hi, rng)}".rstrip() + extra

    def indirect_request(self, genre: str, lo: int | None, hi: int | None, count: str, extra: str = "") -> str | None:
        """A wish that implies the genre ('I want to be scared.') with a short ask that carries era and count."""
        wish = ph.indirect(genre, self.rng)
        if wish is None:
            return None
        era = ph.era_phrase(lo, hi, self.rng)
        if count:
            np = f"{count} {self.nouns}"
        else:
            np = self.rng.choice(["something", f"a {self.noun}", f"some {self.nouns}", f"a good {self.noun}", "a few"])
        np = f"{np} {era}".rstrip()
        frames = [f for f in ph.ASK_SHORT if "{np}" in f] if (era or count) else ph.ASK_SHORT
        ask = self.fmt(self.rng.choice(frames), np=np) + extra
        return f"{wish} {ask}" if self.rng.random() < 0.6 else f"{ask} {wish}"

    # -- answers ----------------------------------------------------------------------------------------------------

    def pick(self, results: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
        """Up to ``n`` items from results, never an item this training user must not be answered with."""
        forbidden = {self.catalog.ids[i] for i in self.task.forbidden} if self.task.split == "train" else set()
        seen, out = set(), []
        for res in results:
            for it in res.get("items", []):
                if it["item_id"] in forbidden or it["item_id"] in seen:
                    continue
                seen.add(it["item_id"])
                out.append(it)
        if not out:
            raise GenerationFailed("no answerable items in the results")
        return out[:n]

    def answerable(self, items: list[int], k: int = 10) -> bool:
        """Whether the first ``k`` of these internal items hold one this user may be answered with."""
        forbidden = self.task.forbidden if self.task.split == "train" else frozenset()
        return any(i not in forbidden for i in items[:k])

    def answer(self, items: list[dict[str, Any]], lead: str | None = None) -> None:
        lead = lead or self.rng.choice(
            [
                f"Here are some {self.nouns} you might like:",
                f"You could try these {self.nouns}:",
                "Based on the results, I'd suggest:",
                f"These {self.nouns} fit what you asked for:",
            ]
        )
        lines = [f"{n}. {item_line(it)}" for n, it in enumerate(items, 1)]
        self.b.say(lead + "\n" + "\n".join(lines))
        tid = self.catalog.ids[self.task.target]
        self.info["answer_ids"] = [it["item_id"] for it in items]
        self.info["target_in_answer"] = tid in self.info["answer_ids"]

    # -- local previews of filters (so a follow-up is only asked when it has an answer) -------------------------------

    def preview_filter(
        self,
        pool: list[int],
        genres: list[str] = (),
        exclude: list[str] = (),
        year_min: int | None = None,
        year_max: int | None = None,
        match: str = "any",
    ) -> list[int]:
        """The items of ``pool`` (in order) that ``filter_items`` keeps for these constraints."""
        cat = self.catalog
        out = []
        for i in pool:
            gs, y = set(cat.genres[i]), int(cat.years[i])
            if genres and not (set(genres) <= gs if match == "all" else gs & set(genres)):
                continue
            if gs & set(exclude):
                continue
            if year_min is not None and y < year_min:
                continue
            if year_max is not None and (y > year_max or y == 0):
                continue
            out.append(i)
        return out

    def preview_catalog(
        self,
        genres: list[str],
        match: str,
        exclude: list[str],
        year_min: int | None,
        year_max: int | None,
        unseen: bool,
    ) -> list[int]:
        """What ``filter_items`` over the whole catalog returns (popularity order) for these constraints."""
        pool = self.preview_filter(range(len(self.catalog.ids)), genres, exclude, year_min, year_max, match)
        if unseen:
            seen = set(self.env.seen(self.task.user).tolist())
            pool = [i for i in pool if i not in seen]
        return sorted(pool, key=lambda i: (-int(self.env.popularity[i]), i))


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def item_line(it: dict[str, Any]) -> str:
    """An answer's line for a tool-result item: ``[id] Title (Year), Genre, Genre`` (the grammar's citable line)."""
    return answer_line(str(it["item_id"]), display_title(it["title"], it.get("year")), it.get("genres") or ())


# -- plans ---------------------------------------------------------------------------------------------------------

Plan = Callable[[PlanContext], None]


def _query(c: PlanContext, genres: list[str], lo: int | None, hi: int | None) -> str:
    """The search query the assistant writes: catalog genre words, the noun and the era, whatever the user's words."""
    words = " ".join(ph.GENRE_WORDS.get(g, [g.lower()])[0] for g in genres)
    return f"{words} {c.nouns} {ph.era_query(lo, hi)}".strip()


def _attr_request(
    c: PlanContext,
    genres: list[str],
    lo: int | None,
    hi: int | None,
    count: str,
    joiner: str = " or ",
    np_suffix: str = "",
    after: str = "",
) -> str:
    """A request that names the wanted attributes: a frame around an attribute noun phrase.

    ``np_suffix`` ends the noun phrase (' that I haven't seen'); ``after`` closes the request. Named genres and
    years are filter_items' job; a wish that only implies a genre ('I need a good laugh') is search_items' (s_search),
    so that one request text never has two gold tools.
    """
    np = c.attr_np(genres, joiner, lo, hi, count, np_suffix)
    return c.dress(ph.want(np, c.rng, c.domain)) + after


def s_search(c: PlanContext) -> None:
    """A wish that implies a genre ('I need a good laugh, something from the 90s?'): search_items in catalog words."""
    genres = [g for g in c.target_genres(2) if ph.INDIRECT.get(g)][:1]
    if not genres:
        raise GenerationFailed("no indirect wish for the target's genres")
    lo, hi = c.target_era() if c.rng.random() < 0.6 else (None, None)
    k, kw = c.stated_k()
    text = c.indirect_request(genres[0], lo, hi, kw) or ""  # never empty: the genre has wishes (checked above)
    c.user(text, keep=[kw])
    res = c.b.call(("search_items", {"query": _query(c, genres, lo, hi), "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def s_filter(c: PlanContext) -> None:
    k, kw = c.stated_k()
    for _ in range(8):  # constraints the catalog has answers for
        genres = c.target_genres(c.rng.choice([1, 2]))
        lo, hi = c.target_era()
        match = "all" if len(genres) > 1 and c.rng.random() < 0.5 else "any"
        unseen = c.rng.random() < 0.5
        if c.answerable(c.preview_catalog(genres, match, [], lo, hi, unseen), k or 10):
            break
    else:
        raise GenerationFailed("no filter with answers")
    text = _attr_request(
        c,
        genres,
        lo,
        hi,
        kw,
        " and " if match == "all" else " or ",
        np_suffix=c.pick_frame(UNSEEN) if unseen else "",
    )
    c.user(c.with_uid(text, force=True) if unseen else text, keep=[kw])
    args = {
        "genres": genres,
        "match": match if match == "all" else None,
        "year_min": lo,
        "year_max": hi,
        "exclude_seen_by": c.task.user_id if unseen else None,
        "k": k,
    }
    res = c.b.call(("filter_items", args))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def _negatives(c: PlanContext, exclude_from: set[str]) -> tuple[list[str], str]:
    """Genres to exclude and how the user says it ('no horror', 'without violence')."""
    if c.rng.random() < 0.2 and not exclude_from & set(VIOLENT):
        return list(VIOLENT), c.rng.choice(ph.VIOLENCE_WORDS)
    options = [g for g in c.catalog.all_genres if g not in exclude_from and g != "unknown"]
    xs = c.rng.sample(options, 2 if c.rng.random() < 0.2 and len(options) > 1 else 1)
    words = [ph.genre_neg_word(x, c.rng) for x in xs]
    return xs, " or ".join(words) if c.rng.random() < 0.5 else " and ".join(words)


def s_filter_neg(c: PlanContext) -> None:
    """Negative constraints: 'comedies from the 90s, but no romance' -> filter_items(..., exclude_genres=[Romance])."""
    target_genres = set(c.catalog.genres[c.task.target])
    k, kw = c.stated_k()
    for _ in range(8):  # a combination the catalog has answers for
        genres = c.target_genres(1) if c.rng.random() < 0.75 else []
        lo, hi = c.target_era() if c.rng.random() < 0.6 else (None, None)
        xs, xwords = _negatives(c, target_genres | set(genres))
        unseen = c.rng.random() < 0.3
        if c.answerable(c.preview_catalog(genres, "any", xs, lo, hi, unseen), k or 10):
            break
    else:
        raise GenerationFailed("no negative constraint with answers")
    if genres:
        ask = _attr_request(c, genres, lo, hi, kw)
        text = c.rng.choice(NEGATIVE_FRAMES).format(ask=ask, x=xwords)
    else:
        era = ph.era_phrase(lo, hi, c.rng)
        text = c.fmt(c.rng.choice(NEGATIVE_ONLY), x=xwords, era=f" {era}" if era else "")
        if kw:
            text += ph.count_clause(kw, c.nouns, c.rng)
    if unseen:
        text = c.with_uid(text + c.pick_frame(UNSEEN_SENTENCE), force=True)
    c.user(text, keep=[kw])
    args = {
        "genres": genres or None,
        "exclude_genres": xs,
        "year_min": lo,
        "year_max": hi,
        "exclude_seen_by": c.task.user_id if unseen else None,
        "k": k,
    }
    res = c.b.call(("filter_items", args))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def s_popular(c: PlanContext) -> None:
    g = c.target_genres(1)[0]
    k, kw = c.stated_k()
    gw = ph.genre_word(g, c.rng)
    wish = ph.indirect(g, c.rng) if c.rng.random() < 0.2 else None
    if wish:
        ask = c.pick_frame(POPULAR_INDIRECT_K, k=kw) if kw else c.pick_frame(POPULAR_INDIRECT)
        text = f"{wish} {ask}"
    else:
        np = c.pick_frame(POPULAR_NP_K, k=kw, g=gw) if kw else c.pick_frame(POPULAR_NP, g=gw)
        frames = POPULAR_Q if not kw else [f for f in POPULAR_Q if "{np}" in f]
        text = (
            c.pick_frame(frames, np=np, g=gw, gn=ph.genre_noun(g, c.rng))
            if c.rng.random() < 0.6
            else ph.want(np, c.rng, c.domain)
        )
        text = c.dress(text)
    c.user(text, keep=[kw])
    res = c.b.call(("popular_items", {"genre": g, "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def _personal_request(c: PlanContext, k: int | None, kw: str) -> str:
    if kw:
        if c.rng.random() < 0.5:
            return c.dress(ph.want(c.pick_frame(PERSONAL_NP_K, k=kw), c.rng, c.domain))
        return c.pick_frame(PERSONAL_Q) + ph.count_clause(kw, c.nouns, c.rng)
    if c.rng.random() < 0.5:
        return c.dress(ph.want(c.pick_frame(PERSONAL_NP), c.rng, c.domain))
    return c.dress(c.pick_frame(PERSONAL_Q))


def s_retrieve(c: PlanContext) -> None:
    k, kw = c.stated_k()
    c.user(c.with_uid(_personal_request(c, k, kw)), keep=[kw])
    res = c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS), lead=f"Based on your history, you might enjoy these {c.nouns}:")


def s_get_item(c: PlanContext) -> None:
    i = c.similar_title()
    t = c.typed_title(i)
    c.user(c.dress(c.pick_frame(INFO_Q, t=t), asks=False), keep=[t])
    res = c.b.call(("get_item", {"title": t}))[0]
    c.b.say(_describe_item(c, res))


def _describe_item(c: PlanContext, res: dict[str, Any]) -> str:
    """The answer to a look-up: the cited item, its genres, year and popularity."""
    it = res["item"]
    return (
        f"{item_line(it)}: a {', '.join(g.lower() for g in it['genres']) or 'uncategorised'} {c.noun}"
        f"{' from ' + str(it['year']) if it.get('year') else ''}, with {res['popularity']} interactions in the data."
    )


def s_history(c: PlanContext) -> None:
    if c.rng.random() < 0.75:
        n = c.rng.choice([3, 4, 5, 5, 10])
        nw = ph.number(n, c.rng)
        text, keep = c.pick_frame(HISTORY_Q_K, k=nw), [nw]
    else:
        n, text, keep = None, c.pick_frame(HISTORY_Q), []
    c.user(c.with_uid(text), keep=keep)
    res = c.b.call(("get_user_history", {"user_id": c.task.user_id, "last_n": n}))[0]
    fav = ", ".join(res["favourite_genres"])
    lines = "\n".join(f"{j}. {item_line(it)}" for j, it in enumerate(res["items"], 1))
    c.b.say(f"Your most recent {c.nouns} (newest last):\n{lines}\nYour favourite genres are {fav}.")


def s_trim(c: PlanContext) -> None:
    """A follow-up that needs no call: 'fewer, just three' answered from the list already shown."""
    k = c.rng.choice([6, 8, 10])
    kw = ph.number(k, c.rng) if c.rng.random() < 0.5 else ""
    c.user(c.with_uid(_personal_request(c, k if kw else None, kw)), keep=[kw])
    res = c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": k if kw else None}))
    shown = c.pick(res, k if kw else c.rng.choice([6, 8]))
    if len(shown) < 4:
        raise GenerationFailed("too few items to trim")
    c.answer(shown, lead=f"Based on your history, you might enjoy these {c.nouns}:")
    n = c.rng.choice([2, 3, 3])
    nw = ph.number(n, c.rng)
    c.user(c.pick_frame(FEWER_Q, k=nw), keep=[nw])
    c.answer(shown[:n], lead=c.rng.choice([f"Sure, your top {n}:", f"The best {n} for you:", f"Here are the top {n}:"]))


def p_popular2(c: PlanContext) -> None:
    genres = list(c.catalog.genres[c.task.target])
    extra = [g for g in c.catalog.all_genres if g not in genres and g != "unknown"]
    pair = (genres[:1] or ["Drama"]) + [c.rng.choice(extra)]
    c.rng.shuffle(pair)
    words = [ph.genre_word(g, c.rng) for g in pair]
    k, kw = c.stated_k(0.3)
    if k is not None:
        k = min(k, 6)
        kw = ph.number(k, c.rng)
    frames = [
        "popular {n}: a few {a} ones and a few {b} ones",
        "Top {a} {n} and top {b} {n}, please.",
        "Show me popular {a} {n}, and separately popular {b} ones.",
        "What's popular in {an}? And in {bn}?",
        "I need two lists: popular {an} and popular {bn}.",
        "most popular {a} {n} + most popular {b} {n}",
        "A few popular {a} picks and a few {b} ones.",
        "What are people {ving} in {an} and in {bn}?",
        "Popular {a} {n}? Also popular {b} ones.",
        "Give me the hits: {an} and {bn}, a few of each.",
        "What are the most popular {a} {n}, and the most popular {b} ones?",
        "Two things: the top {a} {n} and the top {b} {n}.",
        "Which {a} {n} are most popular? Same for {b}.",
        "Can you list popular {a} {n} and popular {b} {n}?",
        "I'd like the best-known {a} and {b} {n}, separately.",
    ]
    frames_k = [
        "{k} popular {a} {n} and {k} popular {b} {n}, please.",
        "Top {k} {a} and top {k} {b} {n}?",
        "The {k} most popular {a} {n}, and {k} {b} ones.",
        "Give me {k} of each: popular {an} and popular {bn}.",
    ]
    names = {"a": words[0], "b": words[1], "an": ph.genre_noun(pair[0], c.rng), "bn": ph.genre_noun(pair[1], c.rng)}
    text = c.pick_frame(frames_k, k=kw, **names) if kw else c.pick_frame(frames, **names)
    c.user(c.dress(text), keep=[kw])
    res = c.b.call(*[("popular_items", {"genre": g, "k": k}) for g in pair])
    items = [c.pick([r], k or 3) for r in res]
    body = "\n\n".join(
        f"{w.capitalize()}:\n" + "\n".join(f"- {item_line(it)}" for it in its) for w, its in zip(words, items)
    )
    c.b.say(f"Popular picks in both genres:\n{body}")
    c.info["answer_ids"] = [it["item_id"] for its in items for it in its]


def p_items2(c: PlanContext) -> None:
    liked = list(dict.fromkeys(c.task.liked(6)))
    if len(liked) < 2:
        raise GenerationFailed("needs two liked items")
    a, b = c.rng.sample(liked, 2)
    if c.title(a) == c.title(b):
        raise GenerationFailed("same title twice")
    ta, tb = c.typed_title(a), c.typed_title(b)
    c.user(c.pick_frame(TWO_ITEMS_Q, a=ta, b=tb), keep=[ta, tb])
    res = c.b.call(("get_item", {"title": ta}), ("get_item", {"title": tb}))
    lines = [f"- {item_line(r['item'])}" for r in res]
    c.b.say("Here they are:\n" + "\n".join(lines))


def p_search_filter(c: PlanContext) -> None:
    s_lo, s_hi = c.target_era() if c.rng.random() < 0.6 else (None, None)
    genres = c.target_genres(1)
    lo, hi = c.target_era()
    # The first half is a mood or plot (search_items); named genres and years are the second half's filter.
    first, s_query = _theme_request(c, "", s_lo, s_hi)
    gw, era = ph.genre_word(genres[0], c.rng), ph.era_phrase(lo, hi, c.rng)
    second = (
        c.fmt(
            c.rng.choice(
                [
                    " Also, show me the most popular {g} {n} {e}.",
                    " And separately: the most popular {g} {n} {e}.",
                    " Plus the top {g} {n} {e}, please.",
                    " Also what are the most popular {g} {n} {e}?",
                    " Oh, and popular {g} {n} {e} too.",
                ]
            ),
            g=gw,
            e=era,
        )
        .replace(" .", ".")
        .replace(" ?", "?")
    )
    c.user(first + second)
    res = c.b.call(
        ("search_items", {"query": s_query}),
        ("filter_items", {"genres": genres, "year_min": lo, "year_max": hi}),
    )
    first_items, second_items = c.pick([res[0]], 3), c.pick([res[1]], 3)
    c.b.say(
        "Matching your description:\n"
        + "\n".join(f"- {item_line(it)}" for it in first_items)
        + "\n\nMost popular in that genre and era:\n"
        + "\n".join(f"- {item_line(it)}" for it in second_items)
    )
    c.info["answer_ids"] = [it["item_id"] for it in first_items + second_items]


def p_models(c: PlanContext) -> None:
    models = [m for m in ("sasrec", "bpr", "itemknn", "pop") if m in c.env.models]
    if len(models) < 2:
        raise GenerationFailed("needs two recommenders")
    m1, m2 = c.rng.sample(models, 2)
    n1, n2 = c.rng.choice(MODEL_NAMES[m1]), c.rng.choice(MODEL_NAMES[m2])
    k, kw = c.stated_k(0.3)
    k = min(k, 5) if k else None
    text = c.pick_frame(MODELS_Q, a=n1, b=n2)
    if k:
        kw = ph.number(k, c.rng)
        text += c.rng.choice([" {k} each.", " Just {k} from each.", " Top {k} per model."]).format(k=kw)
    c.user(c.with_uid(text), keep=[n1, n2, kw])
    res = c.b.call(
        ("retrieve_for_user", {"user_id": c.task.user_id, "model": m1, "k": k}),
        ("retrieve_for_user", {"user_id": c.task.user_id, "model": m2, "k": k}),
    )
    a, b = c.pick([res[0]], k or 3), c.pick([res[1]], k or 3)
    c.b.say(
        f"{m1}:\n"
        + "\n".join(f"- {item_line(it)}" for it in a)
        + f"\n\n{m2}:\n"
        + "\n".join(f"- {item_line(it)}" for it in b)
    )
    c.info["answer_ids"] = [it["item_id"] for it in a + b]


def _similar_request(c: PlanContext, t: str, tail: str = "") -> str:
    if c.rng.random() < 0.55:
        return c.dress(ph.want(c.pick_frame(SIMILAR_NP, t=t) + tail, c.rng, c.domain))
    q = c.pick_frame(SIMILAR_Q, t=t)
    return q + (f" {tail.lstrip(' ,-').capitalize()}." if tail else "")


def c_similar(c: PlanContext, rank: bool = False) -> None:
    i = c.similar_title()
    t = c.typed_title(i)
    k, kw = c.stated_k(0.3)
    tail = c.rng.choice(RANK_CLAUSE) if rank and c.rng.random() < 0.7 else ""
    text = _similar_request(c, t, tail)
    if kw:
        text += ph.count_clause(kw, c.nouns, c.rng)
    c.user(c.with_uid(text) if rank else text, keep=[t, kw])
    found = c.b.call(("get_item", {"title": t}))[0]
    name = c.set_name() if rank else None
    res = c.b.call(
        ("similar_items", {"item_ids": [found["item"]["item_id"]], "k": k if not rank else POOL_K, "save_as": name})
    )
    if rank:
        res = c.b.call(("rank_items", {"user_id": c.task.user_id, "candidates": name, "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def c_similar_rank(c: PlanContext) -> None:
    c_similar(c, rank=True)


def c_retrieve_filter(c: PlanContext) -> None:
    genres = c.target_genres(1)
    g = genres[0]
    k, kw = c.stated_k(0.3)
    gw = ph.genre_word(g, c.rng)
    wish = ph.indirect(g, c.rng) if c.rng.random() < 0.25 else None
    if wish:
        text = (
            wish
            + " "
            + c.rng.choice(
                [
                    "What would I like?",
                    "Anything for me?",
                    "What fits my taste?",
                    "Any picks based on my history?",
                    "What would you pick for me?",
                ]
            )
        )
    elif c.rng.random() < 0.5:
        text = c.dress(ph.want(c.pick_frame(PERSONAL_GENRE_NP, g=gw), c.rng, c.domain))
    else:
        text = c.dress(c.pick_frame(PERSONAL_GENRE_Q, g=gw))
    if kw:
        text += ph.count_clause(kw, c.nouns, c.rng)
    c.user(c.with_uid(text), keep=[kw])
    name = c.set_name()
    c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": POOL_K, "save_as": name}))
    pool = c.env.buffer.get(name)
    if not c.answerable(c.preview_filter(pool, genres), k or 10):
        raise GenerationFailed(f"no {g} items among the user's recommendations")
    res = c.b.call(("filter_items", {"genres": genres, "candidates": name, "sort_by": "input", "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def c_search_prefer(c: PlanContext) -> None:
    genres = c.target_genres(c.rng.choice([1, 2]))
    lo, hi = c.target_era() if c.rng.random() < 0.6 else (None, None)
    k, kw = c.stated_k(0.3)
    # Always said: without it the request is s_filter's, which opens with filter_items and ranks nothing.
    personal = c.rng.choice([" that I'd like", " for my taste", " ranked for me", " that suit me"])
    avoid: list[str] = []
    soft = ""
    if c.rng.random() < 0.3:
        options = [g for g in c.catalog.all_genres if g not in c.catalog.genres[c.task.target] and g != "unknown"]
        avoid = [c.rng.choice(options)]
        soft = c.rng.choice(SOFT_AVOID).format(x=ph.genre_neg_word(avoid[0], c.rng))
    text = _attr_request(c, genres, lo, hi, kw, np_suffix=personal, after=soft)
    c.user(c.with_uid(text), keep=[kw])
    name = c.set_name()
    pool = {"genres": genres, "year_min": lo, "year_max": hi, "k": POOL_K, "save_as": name}
    c.b.call(("filter_items", pool))  # named genres and years: a filter, as in s_filter
    res = c.b.call(
        (
            "rank_by_preference",
            {
                "user_id": c.task.user_id,
                "candidates": name,
                "prefer_genres": genres,
                "avoid_genres": avoid or None,
                "year_min": lo,
                "year_max": hi,
                "k": k,
            },
        )
    )
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def c_history_similar(c: PlanContext) -> None:
    k, kw = c.stated_k(0.3)
    if c.rng.random() < 0.5:
        text = c.dress(ph.want(c.pick_frame(HISTORY_SIMILAR_NP), c.rng, c.domain))
    else:
        text = c.dress(c.pick_frame(HISTORY_SIMILAR_Q))
    if kw:
        text += ph.count_clause(kw, c.nouns, c.rng)
    c.user(c.with_uid(text), keep=[kw])
    hist = c.b.call(("get_user_history", {"user_id": c.task.user_id}))[0]
    best = sorted(hist["items"], key=lambda it: -it["rating"])[: c.rng.choice([1, 2, 3])]
    res = c.b.call(("similar_items", {"item_ids": [it["item_id"] for it in best], "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def c_deep(c: PlanContext) -> None:
    i = c.similar_title()
    lo, hi = c.target_era()
    if lo is None and hi is None:
        raise GenerationFailed("target has no year")
    t = c.typed_title(i)
    k, kw = c.stated_k(0.3)
    era = ph.era_phrase(lo, hi, c.rng)
    tail = f", {era}" + (c.rng.choice(RANK_CLAUSE) if c.rng.random() < 0.8 else "")
    text = _similar_request(c, t, tail)
    if kw:
        text += ph.count_clause(kw, c.nouns, c.rng)
    c.user(c.with_uid(text), keep=[t, kw])
    found = c.b.call(("get_item", {"title": t}))[0]
    s1, s2 = c.rng.sample(SET_NAMES, 2)
    c.b.call(("similar_items", {"item_ids": [found["item"]["item_id"]], "k": POOL_K, "save_as": s1}))
    c.b.call(
        ("filter_items", {"candidates": s1, "year_min": lo, "year_max": hi, "sort_by": "input", "k": 10, "save_as": s2})
    )
    res = c.b.call(("rank_items", {"user_id": c.task.user_id, "candidates": s2, "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def _shown_years(c: PlanContext, shown: list[dict[str, Any]]) -> list[int]:
    return [int(it["year"]) for it in shown if it.get("year")]


def c_refine(c: PlanContext) -> None:
    """Recommendations, then a follow-up that filters them: a genre, older or newer, or without some genres."""
    k, kw = c.stated_k(0.3)
    c.user(c.with_uid(_personal_request(c, k, kw)), keep=[kw])
    name = c.set_name()
    first = c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": k, "save_as": name}))
    shown = c.pick(first, min(k or 5, c.rng.choice([3, 4, 5])))
    c.answer(shown)
    pool = c.env.buffer.get(name)
    years = _shown_years(c, shown)
    target_genres = set(c.catalog.genres[c.task.target])
    options: list[tuple[str, dict[str, Any], list[str]]] = []  # (user text, filter args, keep)
    g = c.target_genres(1)[0]
    if c.answerable(c.preview_filter(pool, [g])):
        wish = ph.indirect(g, c.rng) if c.rng.random() < 0.3 else None
        text = (
            (wish + " " + c.rng.choice(["Any of those?", "Anything like that in there?", "Which ones fit?"]))
            if wish
            else c.pick_frame(NARROW_Q, g=ph.genre_word(g, c.rng))
        )
        options.append((text, {"genres": [g]}, []))
    if years:
        y0 = min(years)
        if c.rng.random() < 0.5 and c.answerable(c.preview_filter(pool, year_max=y0 - 1)):
            options.append((c.pick_frame(OLDER_Q), {"year_max": y0 - 1}, []))
        elif c.answerable(c.preview_filter(pool, year_max=ph.decade(y0) - 1)):
            options.append((c.pick_frame(OLDER_Q_Y, y=ph.decade(y0)), {"year_max": ph.decade(y0) - 1}, []))
        if c.answerable(c.preview_filter(pool, year_min=max(years) + 1)):
            options.append((c.pick_frame(NEWER_Q), {"year_min": max(years) + 1}, []))
    shown_genres = {g for it in shown for g in it.get("genres", [])}
    violent = [x for x in VIOLENT if x in shown_genres]
    if violent and not target_genres & set(VIOLENT) and c.answerable(c.preview_filter(pool, exclude=VIOLENT)):
        options.append(
            (c.pick_frame(EXCLUDE_Q, x=c.rng.choice(ph.VIOLENCE_WORDS)), {"exclude_genres": list(VIOLENT)}, [])
        )
    xs = sorted(shown_genres - target_genres - {"unknown"})
    if xs:
        x = c.rng.choice(xs)
        if c.answerable(c.preview_filter(pool, exclude=[x])):
            options.append((c.pick_frame(EXCLUDE_Q, x=ph.genre_neg_word(x, c.rng)), {"exclude_genres": [x]}, []))
    if not options:
        raise GenerationFailed("no follow-up with answers")
    text, args, keep = c.rng.choice(options)
    c.user(text, keep=keep)
    res = c.b.call(("filter_items", {**args, "candidates": name, "sort_by": "input"}))
    c.answer(c.pick(res, ANSWER_SHOWS), lead=c.rng.choice(FOLLOW_LEADS))


def c_refine_like(c: PlanContext) -> None:
    """A list, then 'more like the second one': similar_items on the item the user points at."""
    k, kw = c.stated_k(0.3)
    if c.rng.random() < 0.5:
        c.user(c.with_uid(_personal_request(c, k, kw)), keep=[kw])
        first = c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": k}))
    else:
        g = c.target_genres(1)[0]
        gw = ph.genre_word(g, c.rng)
        np = c.pick_frame(POPULAR_NP_K, k=kw, g=gw) if kw else c.pick_frame(POPULAR_NP, g=gw)
        c.user(c.dress(ph.want(np, c.rng, c.domain)), keep=[kw])
        first = c.b.call(("popular_items", {"genre": g, "k": k}))
    shown = c.pick(first, min(k or 5, 5))
    c.answer(shown)
    target_title = c.title(c.task.target).lower()
    options = [j for j, it in enumerate(shown) if target_title not in ph.short_title(it["title"]).lower()]
    if not options:
        raise GenerationFailed("every shown item is the target")
    j = c.rng.choice(options)
    k2, kw2 = c.stated_k(0.25)
    if c.rng.random() < 0.7:
        o = "last" if j == len(shown) - 1 and c.rng.random() < 0.5 else ORDINALS[j]
        text, keep = c.pick_frame(LIKE_NTH_Q, o=o, j=j + 1), [o, kw2]
    else:
        t = ph.short_title(shown[j]["title"])
        text, keep = c.pick_frame(LIKE_TITLE_Q, t=t), [t, kw2]
    if kw2:
        text += ph.count_clause(kw2, c.nouns, c.rng)
    c.user(text, keep=keep)
    res = c.b.call(("similar_items", {"item_ids": [shown[j]["item_id"]], "k": k2}))
    c.answer(c.pick(res, k2 or ANSWER_SHOWS), lead=c.rng.choice(FOLLOW_LEADS))


def c_refine_rank(c: PlanContext) -> None:
    """A list, then 'fewer, just the three I'd like most': rank_items over the shown ids for this user."""
    g = c.target_genres(1)[0]
    k1 = c.rng.choice([6, 8, 10])
    kw1 = ph.number(k1, c.rng) if c.rng.random() < 0.5 else ""
    if c.rng.random() < 0.5:
        gw = ph.genre_word(g, c.rng)
        np = c.pick_frame(POPULAR_NP_K, k=kw1, g=gw) if kw1 else c.pick_frame(POPULAR_NP, g=gw)
        c.user(c.dress(ph.want(np, c.rng, c.domain)), keep=[kw1])
        first = c.b.call(("popular_items", {"genre": g, "k": k1 if kw1 else None}))
    else:
        lo, hi = c.target_era() if c.rng.random() < 0.5 else (None, None)
        c.user(_attr_request(c, [g], lo, hi, kw1), keep=[kw1])
        first = c.b.call(("filter_items", {"genres": [g], "year_min": lo, "year_max": hi, "k": k1 if kw1 else None}))
    shown = c.pick(first, k1 if kw1 else c.rng.choice([6, 8]))
    if len(shown) < 4:
        raise GenerationFailed("too few items to narrow down")
    c.answer(shown)
    n = c.rng.choice([2, 3, 3])
    nw = ph.number(n, c.rng)
    c.user(c.with_uid(c.pick_frame(FEWER_MINE_Q, k=nw)), keep=[nw])
    res = c.b.call(("rank_items", {"user_id": c.task.user_id, "item_ids": [it["item_id"] for it in shown], "k": n}))
    c.answer(
        c.pick(res, n),
        lead=c.rng.choice(
            [f"The {n} that fit your taste best:", f"For you, these {n}:", f"Ranked for you, the top {n}:"]
        ),
    )


def cl_user(c: PlanContext) -> None:
    k, kw = c.stated_k(0.3)
    if c.rng.random() < 0.5:
        text = c.dress(ph.want(c.pick_frame(HISTORY_OPEN_NP), c.rng, c.domain))
    else:
        text = c.dress(
            c.rng.choice(
                [
                    "What should I {verb} next, based on my history?",
                    "What would I like, given my past {n}?",
                    "Recommend me something from my history.",
                    "Use my history to pick something for me.",
                    "Personal recommendations, please.",
                    "Based on what I've {ved}, what's next?",
                ]
            )
        )
        text = c.fmt(text)
    if kw:
        text += ph.count_clause(kw, c.nouns, c.rng)
    c.user(text, keep=[kw])
    c.b.say(c.rng.choice(ASK_ID))
    c.user(ph.uid_reply(c.task.user_id, c.rng))
    res = c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def cl_title(c: PlanContext) -> None:
    if c.rng.random() < 0.5:
        c.user(c.dress(ph.want(c.pick_frame(TITLE_OPEN), c.rng, c.domain)))
    else:
        c.user(c.dress(c.pick_frame(TITLE_OPEN_Q)))
    c.b.say(c.pick_frame(ASK_TITLE))
    i = c.similar_title()
    t = c.typed_title(i)
    c.user(c.pick_frame(TITLE_REPLY, t=t), keep=[t])
    found = c.b.call(("get_item", {"title": t}))[0]
    res = c.b.call(("similar_items", {"item_ids": [found["item"]["item_id"]], "k": None}))
    c.answer(c.pick(res, ANSWER_SHOWS))


def cl_history(c: PlanContext) -> None:
    c.user(c.pick_frame(HISTORY_Q))
    c.b.say(
        c.rng.choice(
            [
                "Sure, what's your user id?",
                "Which user id should I look up?",
                "Happy to. What's your user id?",
                "I need your user id first. What is it?",
            ]
        )
    )
    c.user(ph.uid_reply(c.task.user_id, c.rng))
    res = c.b.call(("get_user_history", {"user_id": c.task.user_id}))[0]
    lines = "\n".join(f"{j}. {item_line(it)}" for j, it in enumerate(res["items"], 1))
    c.b.say(f"Your most recent {c.nouns} (newest last):\n{lines}")


def n_out_of_scope(c: PlanContext) -> None:
    topic = c.info["topic"]
    c.user(c.dress(c.rng.choice(OUT_OF_SCOPE[topic]).format(t=c.title(c.similar_title())), asks=False))
    can = sorted({v.schema["function"]["description"].rstrip(".").lower() for v in c.info["offered_real"]})[:3]
    c.b.say(
        c.rng.choice(
            [
                "Sorry, I can't do that: none of my tools covers it.",
                "I'm afraid that is outside what my tools can do.",
                "That's not something I can help with, sorry.",
                "Sorry, my tools don't cover that.",
            ]
        )
        + (" What I can do: " + "; ".join(can) + "." if can else "")
    )


def n_greeting(c: PlanContext) -> None:
    c.user(c.rng.choice(GREETING))
    can = [v.schema["function"]["description"].rstrip(".") for v in c.info["offered_real"]][:4]
    c.b.say(f"I help you find {c.nouns}. With my tools I can: " + "; ".join(can) + ". What are you in the mood for?")


def n_smalltalk(c: PlanContext) -> None:
    asks, replies = c.rng.choice(SMALL_TALK)
    genre = c.target_genres(1)[0]
    other = [g for g in ph.GENRE_NOUNS if g in c.catalog.all_genres and g != genre] or [genre]
    slots = {
        "g": ph.genre_noun(genre, c.rng),
        "ga": ph.genre_word(genre, c.rng),
        "g2": ph.genre_noun(c.rng.choice(other), c.rng),
        "d": ph.decade_word(ph.decade(int(c.catalog.years[c.task.target]) or 1990), c.rng),
        "t": c.title(c.similar_title()),
    }
    c.user(c.pick_frame(asks, **slots), keep=[slots["t"]])
    c.b.say(c.pick_frame(replies, **slots))


# -- plans that open with what the base plans never open with ---------------------------------------------------------


def _rank_ids_request(c: PlanContext, r: str, n_items: int) -> tuple[str, int | None, str]:
    """'Which of movies 12, 100 and 7 would I like most?' and sometimes 'Just the top two.' -> (text, k, k word)."""
    text = c.pick_frame(RANK_IDS_Q, r=r, R=r[:1].upper() + r[1:])
    k, kw = None, ""
    if n_items > 3 and c.rng.random() < 0.3:
        k = c.rng.choice([n for n in (1, 2, 3) if n < n_items])
        kw = ph.number(k, c.rng)
        text += c.rng.choice(RANK_TOP).format(k=kw)
    return text, k, kw


def s_rank_given(c: PlanContext) -> None:
    """'Rank movies 12, 100 and 7 for me (user 5)': rank_items over the ids the user gives, for that user."""
    items = c.candidate_items(c.rng.choice([3, 3, 4, 5, 6]))
    r = c.refs(items)
    text, k, kw = _rank_ids_request(c, r, len(items))
    c.user(c.with_uid(text, force=True), keep=[r, kw])
    res = c.b.call(("rank_items", {"user_id": c.task.user_id, "item_ids": [c.catalog.ids[i] for i in items], "k": k}))
    c.answer(c.pick(res, k or len(items)), lead=c.rng.choice(RANK_LEADS))


def s_rank_history(c: PlanContext) -> None:
    """'I loved movies 50 and 172; which of 12, 100 and 7 should I watch?': rank_items for a history, no user id."""
    liked = c.liked_items(c.rng.choice([1, 2, 2, 3]))
    items = c.candidate_items(c.rng.choice([3, 4, 5]))
    h, r = c.refs(liked), c.refs(items)
    text = c.pick_frame(RANK_HISTORY_Q, h=h, r=r, H=h[:1].upper() + h[1:])
    c.user(text, keep=[h, r])
    res = c.b.call(
        ("rank_items", {"history": [c.catalog.ids[i] for i in liked], "item_ids": [c.catalog.ids[i] for i in items]})
    )
    c.answer(c.pick(res, len(items)), lead=c.rng.choice(RANK_LEADS))


def s_rank_pref_given(c: PlanContext) -> None:
    """'Of movies 12, 100 and 7, which fit me? Preferably funny.': rank_by_preference over the given ids."""
    items = c.candidate_items(c.rng.choice([3, 4, 5, 6]))
    r = c.refs(items)
    shown = {g for i in items for g in c.catalog.genres[i]} - {"unknown"}
    prefer = [g for g in c.catalog.genres[c.task.target] if g in shown]
    avoid = sorted(shown - set(c.catalog.genres[c.task.target]))
    if prefer and (not avoid or c.rng.random() < 0.65):
        g = c.rng.choice(prefer)
        text, args = c.pick_frame(RANK_PREFER_Q, r=r, g=ph.genre_word(g, c.rng)), {"prefer_genres": [g]}
    elif avoid:
        x = c.rng.choice(avoid)
        text, args = c.pick_frame(RANK_AVOID_Q, r=r, x=ph.genre_neg_word(x, c.rng)), {"avoid_genres": [x]}
    else:
        raise GenerationFailed("no genre preference to state about these items")
    c.user(c.with_uid(text, force=True), keep=[r])
    res = c.b.call(
        ("rank_by_preference", {"user_id": c.task.user_id, "item_ids": [c.catalog.ids[i] for i in items], **args})
    )
    c.answer(c.pick(res, len(items)), lead=c.rng.choice(["Ranked with your preference in mind:", *RANK_LEADS]))


def s_similar_ids(c: PlanContext) -> None:
    """'More like movies 50 and 172': similar_items straight on the ids the user gives (no look-up first)."""
    liked = c.liked_items(c.rng.choice([1, 1, 1, 2, 2, 3]))
    r = c.refs(liked)
    k, kw = c.stated_k(0.3)
    text = c.pick_frame(SIMILAR_IDS_Q, r=r, R=r[:1].upper() + r[1:])
    if kw:
        text += ph.count_clause(kw, c.nouns, c.rng)
    c.user(c.dress(text), keep=[r, kw])
    res = c.b.call(("similar_items", {"item_ids": [c.catalog.ids[i] for i in liked], "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def s_item_by_id(c: PlanContext) -> None:
    """'What's movie 127?': get_item by the id the user gives."""
    i = c.rng.choice(c.liked_items(1) + c.candidate_items(1))
    r = c.refs([i])
    c.user(c.dress(c.pick_frame(INFO_ID_Q, r=r, R=r[:1].upper() + r[1:]), asks=False), keep=[r])
    res = c.b.call(("get_item", {"item_id": c.catalog.ids[i]}))[0]
    c.b.say(_describe_item(c, res))


def _theme_request(c: PlanContext, kw: str, lo: int | None, hi: int | None, tail: str = "") -> tuple[str, str]:
    """A request for a mood ('something heartwarming', 'Rainy evening, blanket and tea: what fits?') or a plot
    ('films about a bank robbery') near the target's genres, and the search query it becomes: the mood word the user
    said (or the mood's key words when they only described it), or the plot's key words, with the noun and era."""
    rng = c.rng
    genres = list(c.catalog.genres[c.task.target])
    era = ph.era_phrase(lo, hi, rng)
    count = ph.count_clause(kw, c.nouns, rng) if kw else ""
    if c.domain != "music" and rng.random() < 0.55:
        theme = ph.theme_near(ph.PLOTS, genres, rng)
        x, y = rng.choice(theme.words), rng.choice(theme.extras)
        frames, slots, words = (PLOT_NP, PLOT_Q), {"x": x, "y": y, "X": x[:1].upper() + x[1:]}, theme.query
    else:
        theme = ph.theme_near(ph.MOODS, genres, rng)
        a = rng.choice(theme.words)
        frames, slots, words = (MOOD_NP, MOOD_Q), {"a": a, "aa": f"{article(a)} {a}"}, a
        if rng.random() < 0.3:  # the mood described, not named: the query takes the mood's key words
            np = f"{kw} {c.nouns}" if kw else rng.choice(["something", f"a {c.noun}", f"some {c.nouns}"])
            np += f" {era}" if era else ""
            frames = [f for f in ph.ASK_SHORT if "{np}" in f] if (era or kw) else ph.ASK_SHORT
            ask = c.fmt(rng.choice(frames), np=np)
            wish = rng.choice(theme.extras)
            text = f"{wish} {ask}" if rng.random() < 0.6 else f"{ask} {wish}"
            return text + tail, f"{theme.query} {c.nouns} {ph.era_query(lo, hi)}".strip()
    if rng.random() < 0.5:
        np = c.pick_frame(frames[0], **slots) + (f" {era}" if era else "")
        text = c.dress(ph.want(np, rng, c.domain) + count)
    else:
        text = c.dress(c.pick_frame(frames[1], **slots) + (f" Preferably {era}." if era else "") + count)
    return text + tail, f"{words} {c.nouns} {ph.era_query(lo, hi)}".strip()


def s_mood(c: PlanContext) -> None:
    """A mood or a plot in free text ('something eerie', 'films about a heist'): search_items with those words."""
    k, kw = c.stated_k(0.3)
    lo, hi = c.target_era() if c.rng.random() < 0.2 else (None, None)
    text, query = _theme_request(c, kw, lo, hi)
    c.user(text, keep=[kw])
    res = c.b.call(("search_items", {"query": query, "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def _year_limits(c: PlanContext, year: int) -> tuple[int | None, int | None]:
    """Release-year limits that keep the target's year: a floor, a ceiling, two decades or a few years around it.

    A ceiling at or after the catalog's last year would limit nothing, so such targets get floors instead.
    """
    d, last = ph.decade(year), int(c.catalog.years.max())
    ceilings = [y for y in (d + 9, d + 9, year + (-year) % 5) if y < last]
    style = c.rng.random()
    if style < 0.4 or (style < 0.75 and not ceilings):
        return c.rng.choice([d, d, d - 5, d - 10, year - year % 5]), None
    if style < 0.75:
        return None, c.rng.choice(ceilings)
    if c.rng.random() < 0.5:
        lo = d - 10 if d + 19 >= last or c.rng.random() < 0.5 else d
        return lo, lo + 19
    return year - c.rng.choice([2, 3, 5]), min(year + c.rng.choice([1, 2, 5]), last)


def _year_limited(c: PlanContext, k: int | None, kw: str, tail: str = "") -> tuple[str, dict[str, Any]]:
    """A request with year limits said as constraints ('nothing before 1990', 'nothing after the seventies', 'from
    the 80s or 90s'), alone or with a genre and a 'no horror', and the filter_items arguments it becomes."""
    year = int(c.catalog.years[c.task.target])
    if not year:
        raise GenerationFailed("target has no year")
    target_genres = set(c.catalog.genres[c.task.target])
    for _ in range(8):  # a combination the catalog has answers for
        lo, hi = _year_limits(c, year)
        genres = c.target_genres(1) if c.rng.random() < 0.45 else []
        xs, xwords = _negatives(c, target_genres | set(genres)) if c.rng.random() < 0.4 else ([], "")
        unseen = c.rng.random() < 0.15
        if c.answerable(c.preview_catalog(genres, "any", xs, lo, hi, unseen), k or 10):
            break
    else:
        raise GenerationFailed("no year limit with answers")
    clauses = [ph.year_bound(lo, hi, c.nouns, c.rng)]
    if xs:
        clauses.insert(c.rng.randrange(2), c.rng.choice(NO_GENRE_CLAUSE).format(x=xwords))
    clause = c.rng.choice([" and ", ", "]).join(clauses)
    cap = clause[:1].upper() + clause[1:]
    if genres:
        text = c.rng.choice(YEAR_ASK_FRAMES).format(ask=_attr_request(c, genres, None, None, kw), c=clause, C=cap)
    else:
        text = c.fmt(c.rng.choice(YEAR_ONLY_FRAMES), c=clause, C=cap)
        if kw:
            text += ph.count_clause(kw, c.nouns, c.rng)
    text += tail
    if unseen:
        text = c.with_uid(text + c.pick_frame(UNSEEN_SENTENCE), force=True)
    args = {
        "genres": genres or None,
        "exclude_genres": xs or None,
        "year_min": lo,
        "year_max": hi,
        "exclude_seen_by": c.task.user_id if unseen else None,
    }
    return text, args


def s_filter_years(c: PlanContext) -> None:
    """Year limits (and maybe a genre, a 'no horror') said as constraints: filter_items(year_min / year_max, ...)."""
    k, kw = c.stated_k()
    text, args = _year_limited(c, k, kw)
    c.user(text, keep=[kw])
    res = c.b.call(("filter_items", {**args, "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def c_filter_rank(c: PlanContext) -> None:
    """Year limits and negatives for this user ('nothing before 1990, no horror, picked for me'): filter_items,
    then rank_items over what it kept."""
    k, kw = c.stated_k(0.3)
    text, args = _year_limited(c, None, kw, tail=c.rng.choice(PERSONAL_TAIL))
    c.user(c.with_uid(text), keep=[kw])
    name = c.set_name()
    c.b.call(("filter_items", {**args, "k": POOL_K, "save_as": name}))
    res = c.b.call(("rank_items", {"user_id": c.task.user_id, "candidates": name, "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def s_popular_all(c: PlanContext) -> None:
    """'What's popular?' with no genre: popular_items over the whole catalog."""
    k, kw = c.stated_k(0.35)
    text = c.pick_frame(POPULAR_ALL_K, k=kw) if kw else c.pick_frame(POPULAR_ALL_Q)
    c.user(c.dress(text), keep=[kw])
    res = c.b.call(("popular_items", {"k": k}))
    c.answer(
        c.pick(res, k or ANSWER_SHOWS),
        lead=c.rng.choice(
            [f"The most popular {c.nouns} overall:", "Crowd favourites:", f"These {c.nouns} have the most fans:"]
        ),
    )


def p_items2_ids(c: PlanContext) -> None:
    """'Which is older, movie 12 or movie 100?': two get_item calls by the ids the user gives, in parallel."""
    a, b = c.liked_items(1) + c.candidate_items(1) if c.rng.random() < 0.5 else c.liked_items(2)
    ra, rb = c.refs([a]), c.refs([b])
    c.user(c.pick_frame(TWO_ITEMS_Q, a=ra, b=rb), keep=[ra, rb])
    res = c.b.call(("get_item", {"item_id": c.catalog.ids[a]}), ("get_item", {"item_id": c.catalog.ids[b]}))
    c.b.say("Here they are:\n" + "\n".join(f"- {item_line(r['item'])}" for r in res))


def c_similar_ids_rank(c: PlanContext) -> None:
    """'More like movies 50 and 172, ranked for me': similar_items on the given ids, then rank_items for the user."""
    liked = c.liked_items(c.rng.choice([1, 2, 2]))
    r = c.refs(liked)
    k, kw = c.stated_k(0.3)
    text = c.pick_frame(SIMILAR_IDS_Q, r=r, R=r[:1].upper() + r[1:]) + c.rng.choice(PERSONAL_TAIL)
    if kw:
        text += ph.count_clause(kw, c.nouns, c.rng)
    c.user(c.with_uid(text), keep=[r, kw])
    name = c.set_name()
    c.b.call(("similar_items", {"item_ids": [c.catalog.ids[i] for i in liked], "k": POOL_K, "save_as": name}))
    res = c.b.call(("rank_items", {"user_id": c.task.user_id, "candidates": name, "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def c_item_id_similar(c: PlanContext) -> None:
    """'What's movie 127?', then 'anything similar?': get_item by id, then similar_items on it."""
    i = c.liked_items(1)[0]
    r = c.refs([i])
    c.user(c.dress(c.pick_frame(INFO_ID_Q, r=r, R=r[:1].upper() + r[1:]), asks=False), keep=[r])
    res = c.b.call(("get_item", {"item_id": c.catalog.ids[i]}))[0]
    c.b.say(_describe_item(c, res))
    k, kw = c.stated_k(0.25)
    text = c.pick_frame(LIKE_IT_Q) + (ph.count_clause(kw, c.nouns, c.rng) if kw else "")
    c.user(text, keep=[kw])
    out = c.b.call(("similar_items", {"item_ids": [res["item"]["item_id"]], "k": k}))
    c.answer(c.pick(out, k or ANSWER_SHOWS), lead=c.rng.choice(FOLLOW_LEADS))


def c_mood_rank(c: PlanContext) -> None:
    """A mood or plot for this user ('something eerie I'd like'): search_items, then rank_items for the user."""
    k, kw = c.stated_k(0.3)
    text, query = _theme_request(c, kw, None, None, tail=c.rng.choice(PERSONAL_TAIL))
    c.user(c.with_uid(text), keep=[kw])
    name = c.set_name()
    c.b.call(("search_items", {"query": query, "k": max(POOL_K, k or 0), "save_as": name}))
    res = c.b.call(("rank_items", {"user_id": c.task.user_id, "candidates": name, "k": k}))
    c.answer(c.pick(res, k or ANSWER_SHOWS))


def cl_rank(c: PlanContext) -> None:
    """'Which of movies 12, 100 and 7 would I like?' without an id: ask for it, then rank_items."""
    items = c.candidate_items(c.rng.choice([3, 4, 5]))
    r = c.refs(items)
    text, k, kw = _rank_ids_request(c, r, len(items))
    c.user(text, keep=[r, kw])
    c.b.say(c.rng.choice(ASK_ID))
    c.user(ph.uid_reply(c.task.user_id, c.rng))
    res = c.b.call(("rank_items", {"user_id": c.task.user_id, "item_ids": [c.catalog.ids[i] for i in items], "k": k}))
    c.answer(c.pick(res, k or len(items)), lead=c.rng.choice(RANK_LEADS))


def lw_retrieve(c: PlanContext) -> None:
    """List-wise, as ``Agent.recommend`` asks: retrieve for the user, then answer the ids in the result's order.

    The trained recommender's order is the best this policy has to go on (SASRec outranks every other tool on
    next-item NDCG here); measured before these dialogs existed, the shipped policy reordered the retrieved list
    and lost to SASRec alone (NDCG@10 0.100 vs 0.108)."""
    k = c.info["k"]
    c.b.user(LISTWISE_REQUEST.format(k=k, user_id=c.task.user_id))
    res = c.b.call(("retrieve_for_user", {"user_id": c.task.user_id, "k": k}))[0]
    ids = [it["item_id"] for it in res["items"]][:k]
    if len(ids) < k:
        raise GenerationFailed(f"retrieve_for_user returned {len(ids)} of {k} items")
    c.info["answer_ids"] = ids
    c.b.say(listwise_answer(ids))


PLANS: dict[str, list[tuple[str, tuple[str, ...], Plan]]] = {
    "single": [
        ("search", ("search_items",), s_search),
        ("filter", ("filter_items",), s_filter),
        ("popular", ("popular_items",), s_popular),
        ("retrieve", ("retrieve_for_user",), s_retrieve),
        ("get_item", ("get_item",), s_get_item),
        ("history", ("get_user_history",), s_history),
        ("filter_neg", ("filter_items",), s_filter_neg),
        ("trim", ("retrieve_for_user",), s_trim),
    ],
    "parallel": [
        ("popular2", ("popular_items",), p_popular2),
        ("items2", ("get_item",), p_items2),
        ("search_filter", ("search_items", "filter_items"), p_search_filter),
        ("models", ("retrieve_for_user",), p_models),
    ],
    "chain": [
        ("similar", ("get_item", "similar_items"), c_similar),
        ("similar_rank", ("get_item", "similar_items", "rank_items"), c_similar_rank),
        ("retrieve_filter", ("retrieve_for_user", "filter_items"), c_retrieve_filter),
        ("search_prefer", ("filter_items", "rank_by_preference"), c_search_prefer),
        ("history_similar", ("get_user_history", "similar_items"), c_history_similar),
        ("deep", ("get_item", "similar_items", "filter_items", "rank_items"), c_deep),
        ("refine", ("retrieve_for_user", "filter_items"), c_refine),
        ("refine_like", ("retrieve_for_user", "popular_items", "similar_items"), c_refine_like),
        ("refine_rank", ("popular_items", "filter_items", "rank_items"), c_refine_rank),
    ],
    "clarify": [
        ("ask_user", ("retrieve_for_user",), cl_user),
        ("ask_title", ("get_item", "similar_items"), cl_title),
        ("ask_history", ("get_user_history",), cl_history),
    ],
    "no_tool": [("out_of_scope", (), n_out_of_scope), ("greeting", (), n_greeting), ("smalltalk", (), n_smalltalk)],
    "listwise": [("listwise_retrieve", ("retrieve_for_user",), lw_retrieve)],
}
# k of a list-wise dialog: mostly the evaluation's 10 (`recagent eval` asks for top-10), some 5 so k is read
LISTWISE_KS = (10, 10, 10, 5)
# The plan mix. A dialog of a kind draws one of the base PLANS above (uniformly, from the dialog's own RNG, as it
# always has), except that with probability FIRST_CALL_SHARE[kind] it draws from FIRST_CALL_PLANS[kind] instead, by
# weight. These plans open with first decisions the base plans never make (rank_items / rank_by_preference on ids the
# user gives, similar_items and get_item on given ids, search_items for a mood or plot, filter_items from year limits
# said as constraints, popular_items with no genre). Whether and which one is drawn with a separate seeded RNG
# (:func:`choose_plan`), so a dialog that keeps a base plan is the same dialog as before these plans existed.
# Weights within a kind: mood and plot requests weigh most (3.0 single, 1.5 chain): they are many and the base plans
# never search free text; year limits and negatives next (2.5: filter_items opens few base dialogs), then given-id
# ranking (1.5) and similar_items on given ids (1.25); get_item by id is light (0.75 single, 0.5 chain) because the
# base plans already open with get_item most; ranking for a history without a user id and ranking with a stated
# preference are rarer asks (0.5, 0.75). Per kind, 60% of single, 30% of chain, 25% of clarify and 20% of parallel
# dialogs play a first-call plan (no_tool dialogs keep their base plans).
FIRST_CALL_PLANS: dict[str, list[tuple[str, tuple[str, ...], Plan, float]]] = {
    "single": [
        ("rank_given", ("rank_items",), s_rank_given, 1.5),
        ("rank_history", ("rank_items",), s_rank_history, 0.5),
        ("rank_pref_given", ("rank_by_preference",), s_rank_pref_given, 0.75),
        ("similar_ids", ("similar_items",), s_similar_ids, 1.25),
        ("item_by_id", ("get_item",), s_item_by_id, 0.75),
        ("mood", ("search_items",), s_mood, 3.0),
        ("filter_years", ("filter_items",), s_filter_years, 2.5),
        ("popular_all", ("popular_items",), s_popular_all, 1.0),
    ],
    "parallel": [("items2_ids", ("get_item",), p_items2_ids, 1.0)],
    "chain": [
        ("similar_ids_rank", ("similar_items", "rank_items"), c_similar_ids_rank, 1.0),
        ("item_id_similar", ("get_item", "similar_items"), c_item_id_similar, 0.5),
        ("mood_rank", ("search_items", "rank_items"), c_mood_rank, 1.5),
        ("filter_rank", ("filter_items", "rank_items"), c_filter_rank, 1.0),
    ],
    "clarify": [("ask_rank", ("rank_items",), cl_rank, 1.0)],
}
FIRST_CALL_SHARE: dict[str, float] = {"single": 0.6, "parallel": 0.2, "chain": 0.3, "clarify": 0.25}
NEEDS_USER_ID = {
    "retrieve",
    "history",
    "models",
    "similar_rank",
    "retrieve_filter",
    "search_prefer",
    "history_similar",
    "deep",
    "refine",
    "refine_like",
    "refine_rank",
    "trim",
    "rank_given",
    "rank_pref_given",
    "similar_ids_rank",
    "mood_rank",
    "filter_rank",
}


def all_plan_names() -> set[str]:
    """Every plan name, base and first-call plans."""
    return {name for plans in PLANS.values() for name, _, _ in plans} | {
        name for plans in FIRST_CALL_PLANS.values() for name, *_ in plans
    }


@dataclass
class GenRequest:
    """One generation attempt: which kind, split, user task and domain, with its seeded RNG."""

    attempt: int
    kind: str
    split: str
    task: UserTask
    domain: str
    heldout_tools: bool
    rng: random.Random
    tools_per_dialog: tuple[int, int] = (3, 8)
    max_distractors: int = 2
    serving_tools: bool = False  # offer exactly the chat agent's tools (see SynthConfig.serving_tools_share)


def choose_plan(req: GenRequest) -> tuple[str, tuple[str, ...], Plan]:
    """The plan of a request: a first-call plan with probability FIRST_CALL_SHARE[kind] (drawn with an RNG of its
    own, seeded by the request), else a base plan drawn from the request's RNG exactly as before."""
    extra = FIRST_CALL_PLANS.get(req.kind, [])
    if extra:
        side = random.Random(
            f"plan-mix:{req.attempt}:{req.kind}:{req.split}:{req.domain}:{req.task.user_id}:{req.serving_tools}"
        )
        if side.random() < FIRST_CALL_SHARE.get(req.kind, 0.0):
            name, cores, plan, _ = side.choices(extra, weights=[w for *_, w in extra])[0]
            return name, cores, plan
    return req.rng.choice(PLANS[req.kind])


class ProgrammaticGenerator:
    """Offline, template-driven multi-agent dialog generator over the real tools."""

    name = "programmatic"

    def __init__(self, env: ToolEnv, registry_factory: Callable[[ToolEnv], ToolRegistry], pool: ToolPool, dataset: str):
        self.env, self.registry_factory, self.pool, self.dataset = env, registry_factory, pool, dataset

    def offer(self, req: GenRequest, cores: tuple[str, ...], topic: str | None = None) -> list[ToolVariant]:
        """The tools offered in a dialog: the plan's tools, some others and a few distractors, shuffled."""
        rng = req.rng
        # the originals in registry order: the tool block the chat agent renders (list-wise episodes offer it too)
        if req.serving_tools or req.kind == "listwise":
            return [self.pool.variants[core][0] for core in self.pool.variants]
        lo, hi = req.tools_per_dialog
        others = [c for c in self.pool.variants if c not in cores]
        n_other = max(0, rng.randint(lo, hi) - len(cores))
        chosen = list(cores) + rng.sample(others, min(n_other, len(others)))
        offered = [self.pool.for_core(c, req.split, req.domain, rng, req.heldout_tools) for c in chosen]
        distractors = [d for d in self.pool.distractors if d.topic != topic]
        n_d = rng.randint(min(1 if req.kind == "no_tool" else 0, req.max_distractors), req.max_distractors)
        offered += rng.sample(distractors, min(n_d, len(distractors)))
        rng.shuffle(offered)
        return offered

    def generate(self, req: GenRequest) -> Sample:
        """Play one dialog of ``req.kind``; raises :class:`GenerationFailed` when real data does not allow it."""
        rng = req.rng
        plan_name, cores, plan = choose_plan(req)
        topic = rng.choice(list(OUT_OF_SCOPE)) if plan_name == "out_of_scope" else None
        variants = self.offer(req, cores, topic)
        session = self.env.session()
        offered = OfferedTools(variants, self.registry_factory(session))
        b = DialogBuilder(offered, session.catalog, f"{req.attempt}")
        user_known = req.kind not in ("clarify", "no_tool") and plan_name in NEEDS_USER_ID and rng.random() < 0.5
        noun = DOMAIN_NOUNS[req.domain][0]
        about = f" About the user: the user is user_id {req.task.user_id} of the dataset." if user_known else ""
        ctx = PlanContext(req.task, session, b, rng, req.domain, user_known)
        if req.kind == "listwise":  # the agent's list-wise prompt, word for word
            ctx.info["k"] = rng.choice(LISTWISE_KS)
            b.system(LISTWISE.format(user_id=req.task.user_id, dataset=self.dataset, k=ctx.info["k"]))
        else:
            b.system(CHAT.format(dataset=self.dataset, user=about).replace("movie recommender", f"{noun} recommender"))
        ctx.info.update(topic=topic, offered_real=[v for v in variants if v.core is not None])
        plan(ctx)
        if req.kind not in ("no_tool", "listwise") and rng.random() < 0.15:  # a closing no-tool turn
            b.user(ph.noisy(rng.choice(ph.THANKS), rng))
            b.say(rng.choice(ph.WELCOME))
        tid = session.catalog.ids[req.task.target]
        seen = b.seen_ids
        return Sample(
            messages=b.messages,
            tools=offered.schemas(),
            kind=req.kind,
            split=req.split,
            user_id=req.task.user_id,
            target_item=tid,
            domain=req.domain,
            tool_variants={v.name: v.describe() for v in variants},
            attempt=req.attempt,
            generator=self.name,
            steps=[s.to_dict() for s in b.steps],
            extra={
                "plan": plan_name,
                "target_in_results": tid in seen,
                "answer_ids": ctx.info.get("answer_ids", []),
                "topic": topic,
            },
        )

"""Varied, person-like language for the offline generator, grounded in catalog attributes.

Every sentence is built from a target item's real attributes (genres, era, a similar title
from the user's history) and the dialog's domain noun; the title of the target itself never
appears. Templates are hand-written because no library writes catalog-grounded requests
offline. Variety comes from many whole-sentence *frames* per intent (not just openers and
closers), several ways to say each genre (including indirect asks such as "something to
cheer me up" for Comedy), eras, counts ("five", "a dozen") and user ids ("my id's 42",
"user #42"), and from :func:`noisy`, a seeded casual-typing pass (lower case, dropped
punctuation, chat slang, a swapped or dropped letter) that never touches digits or the
spans a tool call depends on.
"""

from __future__ import annotations

import random
import re
from typing import NamedTuple

GENRE_WORDS = {
    "Sci-Fi": ["sci-fi", "science fiction", "scifi"],
    "Film-Noir": ["film noir", "noir"],
    "Children's": ["children's", "kids'", "family"],
    "Musical": ["musical"],
    "Documentary": ["documentary"],
    "Animation": ["animated", "cartoon"],
    "Romance": ["romantic", "romance"],
    "Thriller": ["thriller", "suspense"],
    "Comedy": ["comedy", "funny"],
    "Horror": ["horror", "scary"],
    "Action": ["action"],
    "Adventure": ["adventure"],
    "Crime": ["crime"],
    "Drama": ["drama"],
    "Fantasy": ["fantasy"],
    "Mystery": ["mystery"],
    "War": ["war"],
    "Western": ["western", "cowboy"],
}
# plural nouns that stand for "<genre> movies" on their own (movie domains only for the last three)
GENRE_PLURALS = {
    "Comedy": "comedies",
    "Thriller": "thrillers",
    "Western": "westerns",
    "Mystery": "mysteries",
    "Romance": "romances",
    "Drama": "dramas",
    "Musical": "musicals",
    "Documentary": "documentaries",
}
MOVIE_ONLY_PLURALS = {"Drama", "Musical", "Documentary"}
# a genre as a noun ("what's popular in {noun}?")
GENRE_NOUNS = {
    "Sci-Fi": ["sci-fi", "science fiction"],
    "Film-Noir": ["film noir"],
    "Children's": ["kids' stuff", "family stuff"],
    "Musical": ["musicals"],
    "Documentary": ["documentaries"],
    "Animation": ["animation", "cartoons"],
    "Romance": ["romance"],
    "Thriller": ["thrillers", "suspense"],
    "Comedy": ["comedy", "comedies"],
    "Horror": ["horror"],
    "Action": ["action"],
    "Adventure": ["adventure"],
    "Crime": ["crime"],
    "Drama": ["drama", "dramas"],
    "Fantasy": ["fantasy"],
    "Mystery": ["mystery", "mysteries"],
    "War": ["war stories"],
    "Western": ["westerns"],
}
# how to name a genre the user does NOT want ("no horror", "anything but dramas")
GENRE_NEG_WORDS = {
    "Sci-Fi": ["sci-fi", "science fiction"],
    "Film-Noir": ["film noir", "noir"],
    "Children's": ["kids' stuff", "children's stuff"],
    "Musical": ["musicals", "singing"],
    "Documentary": ["documentaries"],
    "Animation": ["animation", "cartoons"],
    "Romance": ["romance", "romantic stuff", "love stories"],
    "Thriller": ["thrillers"],
    "Comedy": ["comedy", "comedies"],
    "Horror": ["horror", "scary stuff"],
    "Action": ["action"],
    "Adventure": ["adventure"],
    "Crime": ["crime"],
    "Drama": ["drama", "dramas"],
    "Fantasy": ["fantasy"],
    "Mystery": ["mysteries"],
    "War": ["war", "war stuff"],
    "Western": ["westerns"],
}
VIOLENCE_WORDS = ["violence", "violent stuff", "blood and guns", "fighting"]

# Indirect asks: a situation or wish that names no genre but maps to exactly one catalog genre.
INDIRECT: dict[str, list[str]] = {
    "Comedy": [
        "I need a good laugh.",
        "Rough day, I want something to cheer me up.",
        "I want something that makes me laugh.",
        "Feeling a bit down, cheer me up.",
        "I'm in the mood to laugh my head off.",
    ],
    "Horror": [
        "I want to be scared.",
        "I'm in the mood for a proper fright.",
        "I want something that gives me nightmares.",
        "Scare me!",
        "I want to sleep with the lights on tonight.",
    ],
    "Thriller": [
        "I want something that keeps me on the edge of my seat.",
        "I'm after a real nail-biter.",
        "I want tension, the kind where you can't look away.",
        "Give me something gripping and tense.",
    ],
    "Children's": [
        "It's for my kids.",
        "I need something the kids can enjoy.",
        "Family night with the little ones.",
        "Something suitable for young children, please.",
        "My nephews are staying over.",
    ],
    "Animation": ["I love cartoons.", "Something drawn or computer-animated, please.", "I'm in a cartoon mood."],
    "Romance": [
        "It's for date night.",
        "I want a love story.",
        "Something to enjoy with my partner on a cosy evening.",
        "I'm in a romantic mood.",
    ],
    "Drama": [
        "I want a good cry.",
        "I'm after something serious and moving.",
        "I want something emotional, a real tearjerker.",
    ],
    "Sci-Fi": [
        "I'm into space, aliens and the future.",
        "I want robots or spaceships.",
        "Something set in the future, please.",
    ],
    "Action": ["I want explosions and car chases.", "I need an adrenaline rush.", "Lots of fights and stunts, please."],
    "Adventure": [
        "I want an epic journey.",
        "I'm in the mood for a big quest.",
        "Something with treasure hunts and exploring.",
    ],
    "Crime": ["I love gangster stories.", "Heists and mobsters, please.", "I'm into stories about criminals and cops."],
    "Mystery": ["I want a good whodunit.", "Give me a puzzle to solve.", "I like guessing who did it."],
    "War": ["I like stories about soldiers.", "Something set during a war.", "I want battlefields and soldiers."],
    "Western": ["I want cowboys and gunslingers.", "Something set in the wild west.", "Saloons and showdowns, please."],
    "Musical": ["I want lots of singing and dancing.", "Something with great song-and-dance numbers."],
    "Documentary": [
        "I want something real, not fiction.",
        "Real-life stories, nothing made up.",
        "I want to learn something true.",
    ],
    "Fantasy": [
        "Magic, wizards and dragons, please.",
        "I want something magical.",
        "I'm in the mood for elves and spells.",
    ],
    "Film-Noir": ["I like hard-boiled detectives and femme fatales.", "Dark, shadowy detective stories, please."],
}


class Theme(NamedTuple):
    """A mood or a plot theme a user can ask for in free text, and the search query it becomes.

    ``genres``: catalog genres it goes with (to pick themes near a user's target); ``words``: for a mood,
    adjectives the user says ('feel-good'), for a plot, what the story is about ('a bank robbery');
    ``extras``: for a mood, sentences that imply it without the adjective, for a plot, things the story
    has in it ('safecrackers'); ``query``: the key words of the search query when the user's own
    adjective is not the query.
    """

    genres: tuple[str, ...]
    words: tuple[str, ...]
    extras: tuple[str, ...]
    query: str


# Moods: how the user wants to feel. Written for this generator; the query is the adjective said, or ``query``.
MOODS: dict[str, Theme] = {
    "feel-good": Theme(
        ("Comedy", "Romance", "Children's", "Musical"),
        ("feel-good", "heartwarming", "uplifting", "wholesome"),
        (
            "Long week at work and I need something warm and kind.",
            "I want to end the evening smiling.",
            "I'd like something that leaves me in a good mood before bed.",
        ),
        "feel-good uplifting",
    ),
    "light": Theme(
        ("Comedy", "Animation", "Children's"),
        ("light-hearted", "silly", "easy-going", "goofy"),
        (
            "My brain is fried, nothing heavy please.",
            "I want to switch off and not think too hard.",
            "Just something breezy for a lazy Sunday afternoon.",
        ),
        "light-hearted easy",
    ),
    "dark": Theme(
        ("Crime", "Thriller", "Film-Noir", "Horror", "Drama"),
        ("dark", "gritty", "bleak", "grim"),
        (
            "I'm in a brooding mood.",
            "Nothing cheerful tonight, I want it moody and heavy.",
            "I like stories with a really grim atmosphere.",
        ),
        "dark gritty",
    ),
    "mind-bending": Theme(
        ("Sci-Fi", "Mystery", "Thriller"),
        ("mind-bending", "twisty", "puzzling", "surreal"),
        (
            "I want my head to spin by the end.",
            "I love a story that fools me until the last scene.",
            "Give me something I'll keep thinking about for days.",
        ),
        "mind-bending twist",
    ),
    "epic": Theme(
        ("Adventure", "War", "Action", "Fantasy", "Drama"),
        ("epic", "grand", "sweeping", "larger-than-life"),
        (
            "I've got the whole evening free and want something huge in scale.",
            "I want giant battles and a story that spans years.",
        ),
        "epic grand scale",
    ),
    "cosy": Theme(
        ("Romance", "Comedy", "Children's", "Animation"),
        ("cosy", "gentle", "sweet", "charming"),
        ("Rainy evening, blanket and tea: what fits?", "Quiet night in, I want something soft and pleasant."),
        "cosy gentle",
    ),
    "tense": Theme(
        ("Thriller", "Horror", "Crime", "Mystery"),
        ("tense", "suspenseful", "nerve-racking", "claustrophobic"),
        ("I want my palms to sweat.", "Keep me holding my breath the whole way through."),
        "tense suspenseful",
    ),
    "moving": Theme(
        ("Drama", "Romance", "War"),
        ("moving", "bittersweet", "touching", "poignant"),
        ("I'm ready to have my heart broken a little.", "I want something that stays with me afterwards."),
        "moving bittersweet",
    ),
    "quirky": Theme(
        ("Comedy", "Drama"),
        ("quirky", "offbeat", "weird", "eccentric"),
        ("I like odd little stories nobody else has heard of.", "Give me something strange and original."),
        "quirky offbeat",
    ),
    "inspiring": Theme(
        ("Drama", "Documentary", "War"),
        ("inspiring", "motivating", "hopeful"),
        (
            "I want to feel like I can take on the world afterwards.",
            "Something about people beating the odds would be nice.",
        ),
        "inspiring hopeful",
    ),
    "spooky": Theme(
        ("Horror", "Mystery", "Fantasy"),
        ("spooky", "creepy", "eerie", "atmospheric"),
        ("It's stormy outside and I want shivers.", "I like a creepy atmosphere more than gore."),
        "spooky eerie",
    ),
    "fast": Theme(
        ("Action", "Adventure", "Sci-Fi"),
        ("action-packed", "fast-paced", "high-octane"),
        ("I want non-stop momentum, no slow parts.", "Something that never lets up from start to finish."),
        "fast-paced action-packed",
    ),
}

# Plot themes: what the story is about. Written for this generator; the query is ``query`` (the theme's key words).
PLOTS: dict[str, Theme] = {
    "heist": Theme(
        ("Crime", "Thriller", "Action", "Comedy"),
        ("a heist", "a bank robbery", "thieves planning one last job", "a robbery that goes wrong"),
        ("a heist", "safecrackers"),
        "heist robbery",
    ),
    "time travel": Theme(
        ("Sci-Fi", "Adventure", "Comedy"),
        ("time travel", "someone stuck in the past", "going back in time"),
        ("time machines", "time travel"),
        "time travel",
    ),
    "aliens": Theme(
        ("Sci-Fi", "Horror", "Action"),
        ("aliens landing on earth", "first contact with aliens", "an alien invasion"),
        ("aliens", "flying saucers"),
        "aliens invasion",
    ),
    "robots": Theme(
        ("Sci-Fi", "Action"),
        ("robots", "androids that want to be human", "machines turning against people"),
        ("robots", "androids"),
        "robots androids",
    ),
    "space": Theme(
        ("Sci-Fi", "Adventure"),
        ("astronauts", "a mission to another planet", "being lost in space"),
        ("spaceships", "astronauts"),
        "space astronauts",
    ),
    "pirates": Theme(
        ("Adventure", "Action", "Comedy"),
        ("pirates", "sailing the high seas", "buried treasure"),
        ("pirates", "sword fights on ships"),
        "pirates sea adventure",
    ),
    "knights": Theme(
        ("Adventure", "Fantasy", "Action", "Drama"),
        ("knights", "life in a medieval kingdom", "a quest to save a kingdom"),
        ("knights and castles", "sword fights"),
        "knights medieval",
    ),
    "road trip": Theme(
        ("Comedy", "Adventure", "Drama"),
        ("a road trip", "friends driving across the country"),
        ("a long road trip",),
        "road trip",
    ),
    "sports": Theme(
        ("Drama", "Comedy"),
        ("a sports team", "a boxer", "an underdog team"),
        ("boxing", "baseball", "a big game at the end"),
        "sports team underdog",
    ),
    "courtroom": Theme(
        ("Drama", "Thriller", "Crime"),
        ("a courtroom trial", "lawyers fighting a case", "a jury deciding a verdict"),
        ("courtroom scenes", "a big trial"),
        "courtroom trial lawyers",
    ),
    "detective": Theme(
        ("Crime", "Mystery", "Film-Noir", "Thriller"),
        ("a detective hunting a killer", "a murder investigation", "a private eye"),
        ("detectives", "a murder case"),
        "detective murder investigation",
    ),
    "spies": Theme(
        ("Action", "Thriller"),
        ("spies", "secret agents", "a double agent"),
        ("spies and gadgets", "secret agents"),
        "spies secret agents",
    ),
    "high school": Theme(
        ("Comedy", "Drama", "Romance"),
        ("high school", "teenagers growing up", "a prom night"),
        ("teenagers", "high school kids"),
        "high school teenagers",
    ),
    "weddings": Theme(("Comedy", "Romance"), ("a wedding", "a wedding that goes wrong"), ("a wedding",), "wedding"),
    "ghosts": Theme(
        ("Horror", "Comedy", "Fantasy"),
        ("ghosts", "a haunted house"),
        ("ghosts", "a haunted mansion"),
        "ghosts haunted house",
    ),
    "vampires": Theme(("Horror", "Comedy"), ("vampires", "a vampire hunter"), ("vampires", "werewolves"), "vampires"),
    "disaster": Theme(
        ("Action", "Thriller", "Adventure"),
        ("a natural disaster", "a volcano erupting", "a giant storm"),
        ("tornadoes", "a volcano"),
        "natural disaster",
    ),
    "animals": Theme(
        ("Children's", "Comedy", "Adventure", "Animation"),
        ("a dog", "talking animals", "a kid and their pet"),
        ("dogs", "talking animals"),
        "animals dogs",
    ),
    "music": Theme(
        ("Musical", "Drama", "Comedy", "Documentary"),
        ("a rock band", "a struggling musician", "a singer's life"),
        ("great music", "a band on tour"),
        "musicians band",
    ),
    "prison": Theme(
        ("Crime", "Drama", "Action"),
        ("a prison escape", "life behind bars"),
        ("a jailbreak", "prisoners"),
        "prison escape",
    ),
    "con artists": Theme(
        ("Crime", "Comedy"),
        ("con artists", "a big scam", "swindlers"),
        ("con men", "a clever scam"),
        "con artists scam",
    ),
    "survival": Theme(
        ("Adventure", "Action", "Drama"),
        ("surviving in the wild", "being stranded on an island", "a plane crash in the mountains"),
        ("survival in the wilderness",),
        "survival wilderness",
    ),
    "soldiers": Theme(
        ("War", "Drama", "Action"),
        ("soldiers in World War II", "a platoon behind enemy lines"),
        ("tanks and battles", "a submarine crew"),
        "world war soldiers",
    ),
    "outlaws": Theme(
        ("Western",),
        ("outlaws on the frontier", "a sheriff and a gang"),
        ("gunfights", "horse chases"),
        "outlaws frontier",
    ),
    "fairy tales": Theme(
        ("Children's", "Animation", "Fantasy", "Musical"),
        ("a princess", "a fairy tale", "a magic kingdom"),
        ("fairy tale creatures",),
        "fairy tale princess",
    ),
    "martial arts": Theme(
        ("Action",),
        ("kung fu masters", "a martial arts tournament"),
        ("martial arts", "kung fu fights"),
        "martial arts kung fu",
    ),
    "journalism": Theme(
        ("Drama", "Thriller"),
        ("reporters chasing a story", "a newspaper uncovering a scandal"),
        ("journalists",),
        "journalists scandal",
    ),
    "politics": Theme(
        ("Drama", "Comedy", "Thriller"),
        ("a presidential election", "politicians", "the White House"),
        ("politicians",),
        "politics president",
    ),
    "holidays": Theme(
        ("Comedy", "Children's", "Drama"),
        ("Christmas", "the holidays with family"),
        ("a Christmas setting",),
        "christmas holidays",
    ),
    "food": Theme(
        ("Comedy", "Romance", "Drama"),
        ("a chef", "cooking", "a restaurant"),
        ("lots of food and cooking",),
        "food cooking chef",
    ),
    "big city": Theme(
        ("Comedy", "Drama", "Crime", "Romance"),
        ("life in New York", "a big city at night"),
        ("New York streets",),
        "new york city",
    ),
    "superheroes": Theme(
        ("Action", "Adventure", "Sci-Fi"),
        ("superheroes", "a comic book hero"),
        ("superpowers", "caped heroes"),
        "superheroes comic book",
    ),
    "sea monsters": Theme(
        ("Horror", "Thriller", "Adventure"),
        ("sharks", "monsters in the ocean"),
        ("sharks", "sea monsters"),
        "sharks sea monsters",
    ),
}

DOMAIN_VERBS = {  # (verb, past participle, -ing form) per domain
    "movies": ("watch", "watched", "watching"),
    "films": ("watch", "seen", "watching"),
    "books": ("read", "read", "reading"),
    "music": ("listen to", "listened to", "listening to"),
}

NUMBER_WORDS = {
    1: "one",
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
    12: "twelve",
    15: "fifteen",
    20: "twenty",
}
STATED_K = [3, 4, 5, 5, 6, 8, 10, 10, 12]
DECADE_WORDS = {
    1920: "twenties",
    1930: "thirties",
    1940: "forties",
    1950: "fifties",
    1960: "sixties",
    1970: "seventies",
    1980: "eighties",
    1990: "nineties",
}

OPENERS = [
    "",
    "",
    "",
    "Hi! ",
    "Hello, ",
    "Hey, ",
    "Good evening. ",
    "Quick question: ",
    "Hi there. ",
    "So, ",
    "Ok so ",
    "Hey there! ",
    "Morning! ",
    "Um, ",
]
CLOSERS = [
    "",
    "",
    "",
    "",
    " Thanks!",
    " Thank you.",
    " Surprise me.",
    " Cheers.",
    " Thx!",
    " Any ideas?",
    " I trust you.",
    " Thanks in advance.",
]
PLAIN_CLOSERS = [
    "",
    "",
    "",
    "",
    " Thanks!",
    " Thank you.",
    " Cheers.",
    " Thx!",
    " Thanks in advance.",
]  # not asking for picks
WANT = [
    "I'm looking for {np}.",
    "Can you suggest {np}?",
    "Could you recommend {np}?",
    "I'd like to {verb} {np}.",
    "Any chance you could find me {np}?",
    "Recommend me {np}, please.",
    "Help me find {np}.",
    "Please find {np} for me.",
    "Show me {np}.",
    "Give me {np}.",
    "I want {np}.",
    "I could go for {np} right now.",
    "Need {np} for the weekend.",
    "Got {np} for me?",
    "Hit me with {np}.",
    "Looking for {np} to {verb} tonight.",
    "Do you know {np} worth {verbing}?",
    "Point me to {np}.",
    "I'm after {np}.",
    "{np}, please.",
    "{Np}?",
    "Would love {np}.",
    "Suggest {np}.",
    "Can I get {np}?",
    "Find me {np}.",
    "Any recommendations? I want {np}.",
    "Friends are coming over and we want {np}.",
    "What would you recommend if I want {np}?",
    "I'm in the mood for {np}.",
    "Search for {np}.",
    "Looking for recommendations: {np}.",
    "Can you dig up {np}?",
]
# short asks that follow (or precede) an indirect wish; {np} is generic ("something from the 90s", "five films")
ASK_SHORT = [
    "Any ideas?",
    "What do you suggest?",
    "What should I {verb}?",
    "Can you find me {np}?",
    "Got {np}?",
    "Recommend {np}.",
    "Any {n} for that?",
    "Suggestions?",
    "What have you got?",
    "Help me pick {np}.",
    "Find me {np}.",
    "What would you pick?",
    "I need {np}.",
    "Show me {np}.",
    "Anything?",
]
THANKS = [
    "Thanks, that's great!",
    "Perfect, thank you.",
    "Great, I'll check out the first one.",
    "Cool, thanks a lot.",
    "Nice list, cheers!",
    "thanks!!",
    "ty",
    "Awesome, thank you so much.",
    "That helps, thanks.",
    "Brilliant, cheers.",
    "ok thanks",
    "Perfect. That's all I needed.",
    "Great picks, thank you!",
    "Thanks, I'll try those.",
]
WELCOME = [
    "You're welcome, enjoy!",
    "Glad I could help. Enjoy!",
    "Happy to help. Have fun!",
    "Enjoy! Ask me any time for more.",
    "Any time. Enjoy!",
    "My pleasure, have a good one!",
]
UID_FORMS = [
    "I'm user {u}.",
    "My user id is {u}.",
    "my id's {u}.",
    "user #{u} here.",
    "id {u}.",
    "(user {u})",
    "This is user {u}.",
    "I'm user number {u}.",
    "uid: {u}.",
    "Logged in as user {u}.",
    "My id is {u}.",
    "user id {u} here.",
    "I'm #{u}.",
    "Account {u}.",
    "I am user {u}.",
    "(id {u})",
]
UID_SUFFIX = [
    " - I'm user {u}.",
    " I'm user {u}.",
    " My id is {u}.",
    " (user {u})",
    " user #{u}",
    " my id's {u}",
    " I'm id {u}.",
    " By the way, I'm user {u}.",
]
# one catalog item id as a user types it ({s} is the domain noun): each form reads as an item id, never a bare number
ITEM_REF_ONE = [
    "{s} {i}",
    "{s} {i}",
    "{s} #{i}",
    "#{i}",
    "id {i}",
    "item {i}",
    "[{i}]",
    "the {s} with id {i}",
    "{s} number {i}",
    "{s} id {i}",
    "item #{i}",
]
SLANG = {
    "you": "u",
    "please": "pls",
    "thanks": "thx",
    "want to": "wanna",
    "going to": "gonna",
    "something": "sth",
    "really": "rly",
    "are": "r",
    "okay": "ok",
    "because": "cuz",
    "tonight": "tonite",
}

# -- attributes ----------------------------------------------------------------------------------------------------


def verbs(domain: str) -> tuple[str, str, str]:
    """(verb, participle, -ing form) for consuming an item of the domain ('watch', 'watched', 'watching')."""
    return DOMAIN_VERBS.get(domain, DOMAIN_VERBS["movies"])


def genre_word(genre: str, rng: random.Random) -> str:
    """A natural way to say a catalog genre."""
    return rng.choice(GENRE_WORDS.get(genre, [genre.lower()]))


def genre_noun(genre: str, rng: random.Random) -> str:
    """A genre as a noun ('comedy', 'thrillers', "kids' stuff")."""
    return rng.choice(GENRE_NOUNS.get(genre, [genre.lower()]))


def genre_neg_word(genre: str, rng: random.Random) -> str:
    """How a user names a genre they do not want ('horror', 'love stories')."""
    return rng.choice(GENRE_NEG_WORDS.get(genre, [genre.lower()]))


def genres_phrase(genres: list[str], rng: random.Random) -> str:
    """'comedy', 'comedy and romance', 'action, crime or thriller'."""
    words = [genre_word(g, rng) for g in genres]
    if len(words) == 1:
        return words[0]
    joiner = rng.choice([" and ", " or ", " with some "])
    return ", ".join(words[:-1]) + joiner + words[-1]


def indirect(genre: str, rng: random.Random) -> str | None:
    """A wish that implies the genre without naming it ('I want to be scared.' for Horror), or None."""
    options = INDIRECT.get(genre)
    return rng.choice(options) if options else None


def theme_near(themes: dict[str, Theme], genres: list[str], rng: random.Random, p_near: float = 0.8) -> Theme:
    """A theme that goes with one of ``genres`` (most of the time), else any theme."""
    near = [t for _, t in sorted(themes.items()) if set(t.genres) & set(genres)]
    return rng.choice(near if near and rng.random() < p_near else [t for _, t in sorted(themes.items())])


def decade(year: int) -> int:
    """The decade a year is in (1994 -> 1990)."""
    return year // 10 * 10


def era_phrase(year_min: int | None, year_max: int | None, rng: random.Random) -> str:
    """Words after a noun for a year range ('from the 90s', 'released before 1970', 'from the nineties')."""
    if year_min is not None and year_max is not None:
        if year_max - year_min == 9 and year_min % 10 == 0:
            short = f"{year_min % 100:02d}s"
            options = [
                f"from the {short}",
                f"from the {year_min}s",
                f"made in the {year_min}s",
                f"from the '{short}",
                f"released between {year_min} and {year_max}",
                f"released in the {year_min}s",
            ]
            if year_min in DECADE_WORDS:
                options += [f"from the {DECADE_WORDS[year_min]}", f"made in the {DECADE_WORDS[year_min]}"]
            return rng.choice(options)
        return f"released between {year_min} and {year_max}"
    if year_min is not None:
        return rng.choice(
            [
                f"released after {year_min - 1}",
                f"from {year_min} or later",
                f"not older than {year_min}",
                f"from {year_min} onwards",
                f"newer than {year_min - 1}",
                f"released in {year_min} or later",
            ]
        )
    if year_max is not None:
        return rng.choice(
            [
                f"released before {year_max + 1}",
                f"from {year_max} or earlier",
                f"older than {year_max + 1}",
                f"from before {year_max + 1}",
                f"released up to {year_max}",
                f"made before {year_max + 1}",
            ]
        )
    return ""


def era_adjective(year_min: int | None, year_max: int | None, rng: random.Random) -> str | None:
    """A word before the noun for a year range ('90s', 'nineties', 'pre-1980'), or None when there is none."""
    if year_min is not None and year_max is not None and year_max - year_min == 9 and year_min % 10 == 0:
        options = [f"{year_min % 100:02d}s", f"{year_min}s"] + (
            [DECADE_WORDS[year_min]] if year_min in DECADE_WORDS else []
        )
        return rng.choice(options)
    if year_min is None and year_max is not None:
        return f"pre-{year_max + 1}"
    return None


def era_query(year_min: int | None, year_max: int | None) -> str:
    """The canonical words for a year range in a search query ('from the 1990s', 'before 1980')."""
    if year_min is not None and year_max is not None:
        if year_max - year_min == 9 and year_min % 10 == 0:
            return f"from the {year_min}s"
        return f"from {year_min} to {year_max}"
    if year_min is not None:
        return f"from {year_min} or later"
    if year_max is not None:
        return f"before {year_max + 1}"
    return ""


# -- counts and ids ------------------------------------------------------------------------------------------------


def number(k: int, rng: random.Random) -> str:
    """k as a person writes it: '5', 'five', 'a dozen' (12), 'half a dozen' (6)."""
    options = [str(k)] + ([NUMBER_WORDS[k]] * 2 if k in NUMBER_WORDS else [])
    options += {12: ["a dozen", "a dozen"], 6: ["half a dozen"]}.get(k, [])
    return rng.choice(options)


def count_clause(n: str, nouns: str, rng: random.Random) -> str:
    """A sentence that states a count ``n`` already written out ('five', '10'): ' Just five.', ' Top 10, please.'."""
    text = rng.choice(
        [
            " Just {n}.",
            " {N} would be enough.",
            " Top {n}, please.",
            " Give me {n}.",
            " Max {n}.",
            " {N} {nouns}, please.",
            " Only {n}.",
            " I'd like {n} of them.",
        ]
    )
    return text.format(n=n, N=n[:1].upper() + n[1:], nouns=nouns)


def uid_mention(u: str, rng: random.Random, suffix: bool = False) -> str:
    """How a user gives their id: 'I'm user 42. ', 'my id's 42. ', 'user #42 here. ' (prefix) or ' (user 42)' (suffix)."""
    if suffix:
        return rng.choice(UID_SUFFIX).format(u=u)
    return rng.choice(UID_FORMS).format(u=u) + " "


def uid_reply(u: str, rng: random.Random) -> str:
    """The answer to 'what is your user id?'."""
    return rng.choice(
        [
            "It's {u}.",
            "{u}",
            "User {u}.",
            "My id is {u}.",
            "id {u}",
            "#{u}",
            "it's user number {u}",
            "{u}, thanks",
            "Sure, {u}.",
            "I'm {u}.",
            "User id {u}.",
            "{u} I think",
            "oh right, it's {u}",
            "my id's {u}",
            "user {u}",
        ]
    ).format(u=u)


def _join(parts: list[str], rng: random.Random) -> str:
    """'a and b', 'a, b and c', 'a, b, c', 'a & b' (the last joiner drawn)."""
    if len(parts) == 1:
        return parts[0]
    last = rng.choice([" and ", " and ", ", ", " & "] + ([" or "] if len(parts) == 2 else []))
    return ", ".join(parts[:-1]) + last + parts[-1]


def item_refs(ids: list[str], noun: str, nouns: str, rng: random.Random) -> str:
    """Catalog item ids as a user types them: 'movie 318', '#318', 'id 318', 'films 7, 64 and 9', '#7 & #64'.

    Every form names each id after an item word, a '#' or in brackets, so that the ids read as item ids
    (the verifier's rule for ids the user gave); callers keep the whole span out of :func:`noisy`.
    """
    if len(ids) == 1:
        i = ids[0]
        return rng.choice(ITEM_REF_ONE).format(s=noun, i=i)
    style = rng.randrange(6)
    if style == 0:
        return f"{rng.choice([nouns, nouns, 'items'])} {_join(ids, rng)}"
    if style == 1:
        return rng.choice(["ids ", "ids ", "ids: "]) + _join(ids, rng)
    if style == 2:
        return _join([f"#{i}" for i in ids], rng)
    if style == 3:
        return _join([f"[{i}]" for i in ids], rng)
    if style == 4:
        return f"{nouns} " + _join([f"#{i}" for i in ids], rng)
    return _join([f"{noun} {i}" for i in ids], rng)


def decade_word(d: int, rng: random.Random) -> str:
    """A decade as people say it: '80s', "'80s", '1980s', 'eighties'."""
    return rng.choice(
        [f"{d % 100:02d}s", f"'{d % 100:02d}s", f"{d}s"] + ([DECADE_WORDS[d]] * 2 if d in DECADE_WORDS else [])
    )


def year_bound(year_min: int | None, year_max: int | None, nouns: str, rng: random.Random) -> str:
    """A release-year limit said as a constraint, lower case, no final stop ('nothing before 1990', 'nothing after
    the seventies', 'only from the 80s or 90s'): year_min and year_max are inclusive, as filter_items takes them."""
    if year_min is not None and year_max is not None:
        options = [
            f"only from {year_min} to {year_max}",
            f"nothing before {year_min} and nothing after {year_max}",
            f"released between {year_min} and {year_max}",
            f"from {year_min} to {year_max} only",
        ]
        if year_min % 10 == 0 and year_max % 10 == 9 and year_max - year_min == 19:
            a, b = decade_word(year_min, rng), decade_word(year_min + 10, rng)
            options += [f"only from the {a} or {b}", f"from the {a} or the {b}", f"something from the {a} or {b}"]
        return rng.choice(options)
    if year_min is not None:
        options = [
            f"nothing before {year_min}",
            f"nothing older than {year_min}",
            f"no {nouns} from before {year_min}",
            f"nothing released before {year_min}",
            f"only {year_min} or later",
            f"skip anything pre-{year_min}",
            f"{year_min} or newer only",
        ]
        if year_min % 10 == 0:
            d = decade_word(year_min, rng)
            options += [f"nothing before the {d}", f"nothing older than the {d}", f"the {d} or later only"]
        return rng.choice(options)
    if year_max is not None:
        options = [
            f"nothing after {year_max}",
            f"nothing newer than {year_max}",
            f"nothing released after {year_max}",
            f"nothing more recent than {year_max}",
            f"no {nouns} made after {year_max}",
            f"only stuff from before {year_max + 1}",
            f"{year_max} or older only",
        ]
        if year_max % 10 == 9:
            d = decade_word(year_max - 9, rng)
            options += [f"nothing after the {d}", f"nothing newer than the {d}", f"nothing more recent than the {d}"]
        return rng.choice(options)
    return ""


# -- titles --------------------------------------------------------------------------------------------------------


def short_title(title: str) -> str:
    """A title as a person would type it ('Usual Suspects, The' -> 'The Usual Suspects')."""
    for art in (", The", ", A", ", An"):
        if title.endswith(art):
            return f"{art[2:]} {title[: -len(art)]}"
    return title


def title_variants(title: str, year: int | None, rng: random.Random) -> list[str]:
    """Ways a person types a title, the exact one last: lower case, no article, a small typo, with its year.

    The caller keeps the first variant that the title lookup still resolves to the same item.
    """
    exact = short_title(title)
    out: list[str] = []
    low = exact.lower()
    words = exact.split()
    if len(words) > 1 and words[0].lower() in ("the", "a", "an"):
        out.append(" ".join(words[1:]))
        out.append(" ".join(words[1:]).lower())
    out.append(low)
    long_words = [j for j, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if long_words:
        j = rng.choice(long_words)
        out.append(" ".join(words[:j] + [typo(words[j], rng)] + words[j + 1 :]))
        out.append(" ".join(words[:j] + [typo(words[j], rng)] + words[j + 1 :]).lower())
    if year:
        out.append(f"{exact} ({year})")
    rng.shuffle(out)
    return out + [exact]


# -- requests ------------------------------------------------------------------------------------------------------


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def want(np: str, rng: random.Random, domain: str = "movies", frames: list[str] | None = None) -> str:
    """One request around a noun phrase (with its determiner): 'Can you suggest some comedies from the 90s?'."""
    verb, _, verbing = verbs(domain)
    frame = rng.choice(frames or WANT)
    return frame.format(np=np, Np=_cap(np), verb=verb, verbing=verbing)


def ask_short(np: str, nouns: str, rng: random.Random, domain: str = "movies") -> str:
    """A short ask that goes with an indirect wish ('Any ideas?', 'Can you find me something from the 90s?')."""
    verb, _, _ = verbs(domain)
    return rng.choice(ASK_SHORT).format(np=np, n=nouns, verb=verb)


def request(what: str, rng: random.Random, domain: str = "movies") -> str:
    """A full user request around a noun phrase, with an optional opener and closer."""
    return (rng.choice(OPENERS) + want(what, rng, domain) + rng.choice(CLOSERS)).strip()


def frame(frames: list[str], rng: random.Random, **slots: str) -> str:
    """Fill one of ``frames`` (``{T}`` is ``{t}`` capitalised for every slot ``t``)."""
    caps = {k.upper() if len(k) == 1 else k[:1].upper() + k[1:]: _cap(v) for k, v in slots.items()}
    return rng.choice(frames).format(**slots, **caps)


# -- casual typing -------------------------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]+")
_PROTECTED_WORDS = {w for n in NUMBER_WORDS.values() for w in n.split()} | {"dozen", "half", "user", "id", "uid"}


def typo(word: str, rng: random.Random) -> str:
    """One small slip in a word of 4+ letters: two neighbouring letters swapped, a letter dropped or doubled."""
    if len(word) < 4:
        return word
    j = rng.randrange(1, len(word) - 2) if len(word) > 3 else 1
    op = rng.random()
    if op < 0.45 and word[j] != word[j + 1]:
        return word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    if op < 0.85:
        return word[:j] + word[j + 1 :]
    return word[:j] + word[j] + word[j:]


def noisy(text: str, rng: random.Random, keep: tuple[str, ...] | list[str] = (), level: float = 1.0) -> str:
    """Seeded casual typing: lower case, dropped punctuation, slang and typos, each sometimes.

    Never changes a token that holds a digit (user ids, counts, years), a number word, or any
    span in ``keep`` (titles the call passes on, model names, count words): those come back
    byte for byte. ``level`` scales how often each kind of noise is applied (0 = never).
    """
    lower, punct = rng.random() < 0.4 * level, rng.random() < 0.3 * level
    slang, typos = lower and rng.random() < 0.35, rng.random() < 0.2 * level
    if not (lower or punct or typos):
        return text
    spans = sorted({s for s in keep if s}, key=len, reverse=True)
    for j, s in enumerate(spans):
        text = text.replace(s, f"\x00{j}\x01")
    tokens = text.split(" ")

    def free(tok: str) -> bool:
        return not re.search(r"[\d\x00\x01#]", tok) and tok.lower().strip(".,!?;:()'\"") not in _PROTECTED_WORDS

    if slang:
        joined = " ".join(tokens)
        for a, b in SLANG.items():
            if rng.random() < 0.6:
                joined = re.sub(rf"(?<![\w\x00]){a}(?![\w\x01])", b, joined, flags=re.IGNORECASE)
        tokens = joined.split(" ")
    if typos:
        cands = [j for j, t in enumerate(tokens) if free(t) and any(len(w) >= 4 for w in _WORD.findall(t))]
        for j in rng.sample(cands, min(len(cands), rng.choice([1, 1, 1, 2]))):
            tokens[j] = _WORD.sub(
                lambda m: typo(m.group(0), rng) if len(m.group(0)) >= 4 else m.group(0), tokens[j], count=1
            )
    if lower:
        tokens = [t.lower() if free(t) else t for t in tokens]
    if punct:
        apostrophes = rng.random() < 0.5
        drop = ".,!?;:" + ("'" if apostrophes else "")
        tokens = [("".join(ch for ch in t if ch not in drop) if free(t) else t) for t in tokens]
        tokens = [t for t in tokens if t not in ("-", "—")]
    out = " ".join(t for t in tokens if t)
    for j, s in enumerate(spans):
        out = out.replace(f"\x00{j}\x01", s)
    return out.strip() or text

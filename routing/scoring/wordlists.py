"""Category word lists: features of the local model's stackers that name what each policy is about.

The seed set has 24-237 positives per category: too few for n-gram weights to learn that "stab", "behead"
and "strangle" mean the same thing, or that a child word next to a sexual word is what makes sexual/minors.
These lists carry that domain knowledge, written from the policies' definitions (OpenAI's moderation
categories, Markov et al. 2022) and general trust-and-safety vocabulary, not picked from the seed texts.
The stackers weigh them per category from out-of-fold data, so a list that does not help gets little weight.

Scoring cost matters (the batched scoring path must keep 2,000 items/s): each distinct word is matched once
and cached (words repeat), phrases are plain substring tests, and nothing is a regular expression.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STRIP = "\"'.,!?;:()[]{}<>*_~`#@/\\|-+=&^%$0123456789\u2026\u201c\u201d\u2018\u2019"


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


# Per list: whole words, and stems (a word starting with one matches; kept >= 4 letters so they stay specific).
WORDS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "violence": (
        _words(
            "kill kills killed killing killer killers shot shoot shoots shooting gun guns knife knives war die "
            "dies died dead death hang hanged punch punched hurt hurts hurting beat beating gore rifle rifles "
            "bomb bombs bombing blood bloody bleed bleeding burn burned burning fight"
        ),
        (
            "murder",
            "stab",
            "behead",
            "slaughter",
            "massacre",
            "explod",
            "explosi",
            "attack",
            "strangl",
            "choke",
            "chokin",
            "tortur",
            "lynch",
            "smash",
            "destroy",
            "violen",
            "weapon",
            "assault",
            "execut",
            "extermin",
            "genocid",
            "bullet",
            "terror",
            "corpse",
            "mutilat",
            "dismember",
            "decapitat",
            "maim",
            "butcher",
            "brutal",
            "annihilat",
            "bludgeon",
            "gunned",
            "shotgun",
            "pistol",
            "firearm",
        ),
    ),
    "self_harm": (
        _words("suicide suicidal cutting overdose overdosed wrist wrists razor razors pills kys"),
        ("suicid", "selfharm", "self-harm", "overdos", "anorexi", "bulimi", "starv", "purging", "slit"),
    ),
    "minor": (
        _words(
            "child children kid kids kiddie teen teens teenager teenagers teenage underage minor minors "
            "preteen preteens tween tweens boy boys girl girls son daughter daughters niece nephew baby babies "
            "toddler toddlers schoolgirl schoolgirls schoolboy schoolboys loli lolita shota jailbait pedo "
            "pedophile pedophiles pedophilia paedophile young younger youngster youngsters infant infants "
            "stepdaughter stepson"
        ),
        ("babysit", "pedophil", "paedophil", "prepubesc", "pubesc"),
    ),
    "sexual": (
        _words(
            "sex sexy sexual sexually nude nudes naked porn porno horny cock cocks pussy dick dicks cum cumming "
            "boobs boob tits titties nipple nipples anal ass butt suck sucked sucking lick licked licking moan "
            "moaned moaning strip stripped kiss kissed kissing bed touch touched touching rape raped raping "
            "rapist hentai nsfw slut sluts whore whores thrust thrusting wet hard erection aroused"
        ),
        (
            "pornogr",
            "orgasm",
            "blowjob",
            "erotic",
            "masturbat",
            "penis",
            "vagina",
            "clitor",
            "molest",
            "grope",
            "gropin",
            "fondl",
            "onlyfans",
            "intercourse",
            "genital",
            "fetish",
            "seduc",
            "naughty",
        ),
    ),
    "insult": (
        _words(
            "idiot idiots stupid moron morons dumb loser losers ugly fat pathetic worthless disgusting trash "
            "garbage scum bitch bitches cunt cunts asshole assholes dickhead bastard bastards freak freaks clown "
            "clowns imbecile stfu pos useless liar liars creep creepy troll trolls retard retarded fool fools "
            "incompetent ignorant hypocrite hypocrites coward cowards jerk jerks twat twats wanker"
        ),
        ("idiot", "stupid", "moron", "retard", "imbecil", "disgust", "pathetic", "worthless", "scumbag"),
    ),
    "second_person": (_words("you you're youre your yours yourself yourselves u ur ya ye"), ()),
    "identity": (
        _words(
            "black blacks white whites jew jews jewish muslim muslims islam islamic christian christians gay "
            "gays lesbian lesbians trans transgender queer queers fag fags faggot faggots women woman female "
            "females immigrant immigrants mexican mexicans arab arabs asian asians chinese african africans "
            "indian indians nigger niggers nigga niggas negro negroes kike kikes spic spics chink chinks "
            "towelhead towelheads refugee refugees foreigner foreigners race racial homosexual homosexuals "
            "latino latinos latina hispanic hispanics disabled jihadi jihadis"
        ),
        (),
    ),
}
# Phrases (lower case, matched as substrings of the lower-cased text with spaces around it).
PHRASES: dict[str, tuple[str, ...]] = {
    "threat": (
        " i will kill",
        " i'll kill",
        " im going to kill",
        " i'm going to kill",
        " i am going to kill",
        " gonna kill",
        " i will hurt",
        " i'll hurt",
        " gonna hurt",
        " i will find you",
        " i'll find you",
        " i know where you live",
        " watch your back",
        " you're dead",
        " you are dead",
        " you will die",
        " you're going to die",
        " should be killed",
        " should be shot",
        " should be hanged",
        " should be hung",
        " deserve to die",
        " deserves to die",
        " should die",
        " need to die",
        " needs to die",
        " must die",
        " death to ",
        " kill them all",
        " kill all ",
        " kill every",
        " wipe them out",
        " gas the ",
        " burn them",
        " hang them",
        " shoot them",
        " let's kill",
        " lets kill",
        " we will kill",
        " we'll kill",
        " i will end you",
        " i'll end you",
        " i will murder",
        " i'll murder",
    ),
    "self_harm_phrase": (
        " kill myself",
        " killing myself",
        " end my life",
        " ending my life",
        " end it all",
        " want to die",
        " wanna die",
        " wish i was dead",
        " wish i were dead",
        " cut myself",
        " cutting myself",
        " hurt myself",
        " hurting myself",
        " hang myself",
        " no reason to live",
        " better off dead",
        " self harm",
        " take my life",
        " take my own life",
        " don't want to live",
        " dont want to live",
    ),
}
NAMES = (*WORDS, *PHRASES)
# A phrase list is searched only in texts holding one of its phrases' longest words (most texts hold none).
ANCHORS = {name: frozenset(max(p.split(), key=len).strip(STRIP) for p in phrases) for name, phrases in PHRASES.items()}
# Pairs whose co-occurrence is the policy (either side alone is common in benign text).
PAIRS = (
    ("minor", "sexual"),  # sexual/minors
    ("identity", "violence"),  # hate/threatening
    ("identity", "threat"),
    ("second_person", "insult"),  # harassment
    ("second_person", "violence"),  # threats at a person
)
WIDTH = len(NAMES) + len(PAIRS)
# Distinct words whose list memberships are cached before starting afresh (bounds worker memory).
CACHE_WORDS = 200_000


class WordLists:
    """Counts of each list's words and phrases in a text (log1p) and the listed pairs' co-occurrences."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, ...]] = {}

    def _lists_of(self, word: str) -> tuple[int, ...]:
        word = word.strip(STRIP)
        found = []
        for index, (words, stems) in enumerate(WORDS.values()):
            if word in words or (stems and word.startswith(stems)):
                found.append(index)
        # Phrase lists' anchors: marked by a negative index (-1 the first list); counted as no word.
        for index, anchors in enumerate(ANCHORS.values(), start=1):
            if word in anchors:
                found.append(-index)
        return tuple(found)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        counts = np.zeros((len(texts), len(NAMES)))
        cache = self._cache
        if len(cache) > CACHE_WORDS:
            cache.clear()
        phrase_lists = list(PHRASES.values())
        offset = len(WORDS)
        for row, text in enumerate(texts):
            words = text.lower().split()
            line = counts[row]
            anchored: set[int] = set()
            for word in words:
                lists = cache.get(word)
                if lists is None:
                    lists = cache[word] = self._lists_of(word)
                for index in lists:
                    if index >= 0:
                        line[index] += 1
                    else:
                        anchored.add(-index - 1)
            if anchored:
                padded = f" {' '.join(words)} "
                for index in anchored:
                    line[offset + index] = sum(padded.count(phrase) for phrase in phrase_lists[index])
        present = counts > 0
        position = {name: i for i, name in enumerate(NAMES)}
        pairs = [present[:, position[a]] & present[:, position[b]] for a, b in PAIRS]
        return np.hstack([np.log1p(counts), np.column_stack(pairs).astype(np.float64)])

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._cache = {}

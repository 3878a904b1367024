"""English homographs read by their part of speech, guessed from the neighbouring words.

CMUdict lists several pronunciations for ``record``, ``live``, ``read``, ``use`` ... and the first
entry is often the wrong one. ``homograph_phones(words, i)`` decides between the noun/adjective
reading and the verb reading of ``words[i]`` from cues around it:

* verb: after ``to``, a modal or auxiliary (will, can, don't ...), a subject pronoun (I, we,
  they ...), ``please``/``let's``; at the start of a clause before a determiner or pronoun (an
  imperative: "Record the show", "Close the door");
* noun or adjective: after a determiner, possessive, number or preposition (the, a, my, of ...),
  or after a linking verb for adjectives (is close, go live);
* ``read`` is the past tense (R EH1 D) after have/has/had/was/been, after he/she/it, or with
  yesterday/ago/last later in the clause, and the present (R IY1 D) otherwise;
* word-specific cues: ``live music`` (L AY1 V), ``lead poisoning`` (L EH1 D), ``wound up``
  (W AW1 N D), ``bass guitar`` ...

Adverbs between the cue and the word are skipped ("I will never use it"). Without a cue the
word's ``default`` reading is used.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Homograph:
    noun: str  # noun or adjective reading
    verb: str
    default: str = "verb"  # "noun" or "verb": the reading without a cue


HOMOGRAPHS = {
    "record": Homograph("R EH1 K ER0 D", "R IH0 K AO1 R D", "noun"),
    "records": Homograph("R EH1 K ER0 D Z", "R IH0 K AO1 R D Z", "noun"),
    "present": Homograph("P R EH1 Z AH0 N T", "P R IY0 Z EH1 N T", "noun"),
    "object": Homograph("AA1 B JH EH0 K T", "AH0 B JH EH1 K T", "noun"),
    "project": Homograph("P R AA1 JH EH0 K T", "P R AH0 JH EH1 K T", "noun"),
    "permit": Homograph("P ER1 M IH2 T", "P ER0 M IH1 T", "noun"),
    "produce": Homograph("P R OW1 D UW0 S", "P R AH0 D UW1 S"),
    "refuse": Homograph("R EH1 F Y UW2 Z", "R IH0 F Y UW1 Z"),
    "desert": Homograph("D EH1 Z ER0 T", "D IH0 Z ER1 T", "noun"),
    "conduct": Homograph("K AA1 N D AH0 K T", "K AA0 N D AH1 K T", "noun"),
    "contract": Homograph("K AA1 N T R AE2 K T", "K AH0 N T R AE1 K T", "noun"),
    "increase": Homograph("IH1 N K R IY2 S", "IH2 N K R IY1 S"),
    "decrease": Homograph("D IY1 K R IY2 S", "D IH0 K R IY1 S"),
    "import": Homograph("IH1 M P AO2 R T", "IH2 M P AO1 R T", "noun"),
    "export": Homograph("EH1 K S P AO0 R T", "IH0 K S P AO1 R T", "noun"),
    "progress": Homograph("P R AA1 G R EH2 S", "P R AH0 G R EH1 S", "noun"),
    "rebel": Homograph("R EH1 B AH0 L", "R IH0 B EH1 L", "noun"),
    "subject": Homograph("S AH1 B JH IH0 K T", "S AH0 B JH EH1 K T", "noun"),
    "suspect": Homograph("S AH1 S P EH2 K T", "S AH0 S P EH1 K T", "noun"),
    "insult": Homograph("IH1 N S AH2 L T", "IH2 N S AH1 L T", "noun"),
    "protest": Homograph("P R OW1 T EH2 S T", "P R AH0 T EH1 S T", "noun"),
    "use": Homograph("Y UW1 S", "Y UW1 Z"),
    "excuse": Homograph("IH0 K S K Y UW1 S", "IH0 K S K Y UW1 Z", "noun"),
    "abuse": Homograph("AH0 B Y UW1 S", "AH0 B Y UW1 Z", "noun"),
    "close": Homograph("K L OW1 S", "K L OW1 Z"),
    "house": Homograph("HH AW1 S", "HH AW1 Z", "noun"),
    "wind": Homograph("W IH1 N D", "W AY1 N D", "noun"),
    "tear": Homograph("T IH1 R", "T EH1 R"),
    "tears": Homograph("T IH1 R Z", "T EH1 R Z", "noun"),
    "lead": Homograph("L EH1 D", "L IY1 D"),
    "live": Homograph("L AY1 V", "L IH1 V"),
    "lives": Homograph("L AY1 V Z", "L IH1 V Z"),
    # decided only by the word-specific cues (_SPECIFIC_ONLY): first reading / second reading
    "read": Homograph("R EH1 D", "R IY1 D"),  # past tense / present
    "wound": Homograph("W AW1 N D", "W UW1 N D"),  # past of wind / the injury
    "minute": Homograph("M AY0 N UW1 T", "M IH1 N AH0 T"),  # tiny / the unit of time
    "bass": Homograph("B AE1 S", "B EY1 S"),  # the fish / the low voice or instrument
    "estimate": Homograph("EH1 S T AH0 M AH0 T", "EH1 S T AH0 M EY2 T", "noun"),
    "separate": Homograph("S EH1 P ER0 IH0 T", "S EH1 P ER0 EY2 T", "noun"),
    "graduate": Homograph("G R AE1 JH AH0 W AH0 T", "G R AE1 JH AH0 W EY2 T", "noun"),
}

_VERB_BEFORE = {
    "to", "will", "would", "can", "could", "should", "must", "may", "might", "shall", "do", "does", "did",
    "don't", "doesn't", "didn't", "won't", "can't", "cannot", "couldn't", "wouldn't", "shouldn't",
    "i", "we", "you", "they", "please", "let's", "i'll", "we'll", "you'll", "they'll", "let",
}
_NOUN_BEFORE = {
    "the", "a", "an", "this", "that", "these", "those", "my", "your", "his", "her", "its", "our", "their",
    "of", "no", "every", "each", "some", "any", "one", "two", "three", "first", "new", "old", "good", "great",
    "in", "on", "for", "with", "at", "by", "from", "into", "world", "whose", "many", "own",
}
_LINKING = {"is", "are", "was", "were", "be", "been", "being", "am", "go", "goes", "went", "going", "get", "got",
            "stay", "come", "came", "very", "so", "too", "quite"}
_PERFORM = {"played", "play", "plays", "playing", "performed", "perform", "performs", "sang", "sing", "broadcast",
            "streamed", "aired", "shown", "went"}
_ADVERBS = {"not", "never", "always", "also", "just", "really", "often", "still", "then", "usually", "soon",
            "sometimes", "only", "even", "already", "probably"}
_OBJECT_START = {"the", "a", "an", "your", "my", "his", "her", "our", "their", "this", "that", "it", "them",
                 "these", "those", "all", "some", "me", "him", "us"}
_PAST_BEFORE = {"have", "has", "had", "having", "was", "were", "been", "he", "she", "it", "already"}
_PAST_LATER = {"yesterday", "ago", "last"}
_NEXT_CUES = {  # word → {next word: "noun" or "verb"}
    "live": dict.fromkeys(("music", "show", "concert", "broadcast", "performance", "stream", "event", "audience",
                           "coverage", "animals", "wire", "recording", "album", "band", "tv", "television"), "noun"),
    "lead": dict.fromkeys(("poisoning", "pipe", "pipes", "paint", "pencil", "pencils"), "noun"),
    "wound": {"up": "noun"},
    "bass": dict.fromkeys(("guitar", "player", "drum", "line", "clef", "singer", "voice", "note"), "verb"),
    "close": dict.fromkeys(("to", "by", "friend", "friends", "call", "relationship", "relative"), "noun"),
    "minute": dict.fromkeys(("details", "detail", "amount", "amounts", "particles", "traces", "changes"), "noun"),
}


_SPECIFIC_ONLY = {"lead", "wound", "minute", "bass"}
_MARKS = set("!?…,.-")


def _cue(words: list[str], i: int) -> str | None:
    word = words[i]
    nxt = words[i + 1] if i + 1 < len(words) else ""
    if nxt in _NEXT_CUES.get(word, {}):
        return _NEXT_CUES[word][nxt]
    j = i - 1
    while j >= 0 and words[j] in _ADVERBS:
        j -= 1
    prev = words[j] if j >= 0 and words[j] not in _MARKS else ""
    if word == "read":
        if prev in _PAST_BEFORE or any(w in _PAST_LATER for w in words[i + 1:]):
            return "noun"
        return "verb"
    if word in _SPECIFIC_ONLY:
        return "noun" if word == "lead" and prev == "of" else None
    if prev in _LINKING and word in ("close", "live") or word == "live" and prev in _PERFORM:
        return "noun"
    if prev in _VERB_BEFORE:
        return "verb"
    if prev in _NOUN_BEFORE or prev.isdigit():
        return "noun"
    if not prev and nxt in _OBJECT_START:
        return "verb"  # imperative at the start of a clause
    return None


def homograph_phones(words: list[str], i: int) -> list[str] | None:
    """Phones of ``words[i]`` (lower case, one clause) if it is a homograph, else None."""
    entry = HOMOGRAPHS.get(words[i])
    if entry is None:
        return None
    kind = _cue(words, i) or entry.default
    return (entry.noun if kind == "noun" else entry.verb).split()

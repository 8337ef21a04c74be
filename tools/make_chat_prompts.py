"""Write src/tpserve/data/chat.jsonl, the chat preset's prompts: mixed-length conversations with long-tailed lengths.

    python tools/make_chat_prompts.py             # rewrite src/tpserve/data/chat.jsonl
    python tools/make_chat_prompts.py --check     # exit 1 if the committed file is not what this script writes

Each line is {"messages": [...], "max_tokens": N}: an optional system prompt, 0 to 7 earlier exchanges
and a last user turn, composed from this script's own sentence templates and vocabulary over 16
topics. Lengths are drawn first and the text is built to fit them, both log-normal and clipped: the prompt
(median ~300 tokens, 16 to ~1,950 after the chat template) and the answer (``max_tokens``: median ~100, 16
to 512), so most conversations are short and a few are long, as in real chat traffic. A prompt and its
answer fit in 2,048 tokens, the tiny CPU model's context. The script uses only Python's seeded ``random`` (no
tokenizer), so it writes the same bytes on every machine; tests/unit/test_chat_prompts.py measures the
lengths with the Llama-2-size tokenizer.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "src" / "tpserve" / "data" / "chat.jsonl"
SEED = 13
COUNT = 200
# Llama-2-size tokenizers split this vocabulary into about 1.3 tokens a word; each message adds its markers.
TOKENS_PER_WORD = 1.3
TOKENS_PER_MESSAGE = 6
CONTEXT = 2048
PROMPT_MEDIAN, PROMPT_SIGMA, PROMPT_RANGE = 300, 1.0, (20, 1900)
OUTPUT_MEDIAN, OUTPUT_SIGMA, OUTPUT_RANGE = 110, 0.85, (16, 512)

# topic: (things, actions, qualities, people)
TOPICS = {
    "home cooking": (["sourdough starter", "cast iron pan", "stock pot", "spice drawer", "weeknight curry",
                      "pie crust", "rice cooker", "batch of granola", "tomato sauce", "lentil soup"],
                     ["season", "braise", "proof", "reduce", "freeze", "reheat", "caramelize", "marinate"],
                     ["crisp", "tender", "bland", "salty", "gummy", "fragrant", "dense", "silky"],
                     ["my flatmate", "my kids", "the dinner guests", "my grandmother"]),
    "gardening": (["raised bed", "compost heap", "tomato seedlings", "rose bush", "herb planter", "apple tree",
                   "clay soil", "drip line", "greenhouse", "lawn"],
                  ["prune", "mulch", "transplant", "water", "fertilize", "stake", "harvest", "overwinter"],
                  ["leggy", "yellowing", "waterlogged", "thriving", "sunburnt", "root-bound", "lush", "patchy"],
                  ["my neighbour", "the allotment committee", "my partner", "the previous owner"]),
    "backend services": (["message queue", "connection pool", "cache layer", "retry policy", "health check",
                          "database index", "rate limiter", "feature flag", "cron job", "deploy pipeline"],
                         ["profile", "shard", "roll back", "tune", "instrument", "migrate", "throttle", "replay"],
                         ["flaky", "slow", "idempotent", "stale", "overloaded", "brittle", "noisy", "lossy"],
                         ["the on-call engineer", "my tech lead", "the platform team", "a new hire"]),
    "personal finance": (["emergency fund", "index fund", "credit card balance", "mortgage", "pension plan",
                          "monthly budget", "tax return", "savings account", "car loan", "utility bill"],
                         ["refinance", "rebalance", "pay down", "track", "split", "automate", "consolidate",
                          "review"],
                         ["overdue", "variable", "tax-free", "expensive", "predictable", "tight", "modest",
                          "generous"],
                         ["my accountant", "my spouse", "my parents", "a friend from work"]),
    "running and fitness": (["half marathon", "tempo run", "rest day", "hill repeat", "knee brace",
                             "training plan", "foam roller", "heart rate zone", "long run", "stretching routine"],
                            ["pace", "taper", "recover", "warm up", "cross-train", "log", "build up", "ice"],
                            ["sore", "steady", "sluggish", "ambitious", "easy", "hilly", "humid", "consistent"],
                            ["my coach", "the running club", "my physio", "a training partner"]),
    "travel planning": (["night train", "carry-on bag", "hostel booking", "travel insurance", "rail pass",
                         "layover", "museum ticket", "walking tour", "ferry crossing", "visa application"],
                        ["book", "pack", "reschedule", "budget", "map out", "cancel", "upgrade", "compare"],
                        ["crowded", "cheap", "scenic", "delayed", "remote", "walkable", "seasonal", "quiet"],
                        ["my travel companion", "the tour guide", "the host", "my sister"]),
    "astronomy": (["refracting telescope", "star chart", "meteor shower", "lunar eclipse", "red dwarf",
                   "eyepiece", "light-polluted sky", "planetary nebula", "binary star", "comet tail"],
                  ["observe", "photograph", "align", "track", "estimate", "calibrate", "sketch", "locate"],
                  ["faint", "bright", "distant", "hazy", "variable", "circumpolar", "dim", "sharp"],
                  ["my astronomy club", "a planetarium guide", "my daughter", "an old professor"]),
    "home repair": (["leaking tap", "squeaky door", "cracked tile", "loose banister", "drafty window",
                     "clogged drain", "peeling paint", "circuit breaker", "water heater", "garden fence"],
                    ["patch", "replace", "seal", "sand", "rewire", "tighten", "insulate", "repaint"],
                    ["rusty", "warped", "damp", "uneven", "rattling", "mouldy", "sturdy", "worn"],
                    ["the landlord", "a plumber", "my brother-in-law", "the hardware store clerk"]),
    "music practice": (["chord progression", "metronome", "scale exercise", "guitar string", "piano sonata",
                        "band rehearsal", "practice log", "sight-reading book", "drum fill", "vocal warm-up"],
                       ["transpose", "memorize", "slow down", "record", "tune", "arrange", "improvise", "repeat"],
                       ["off-beat", "muddy", "lively", "tense", "smooth", "rushed", "expressive", "clean"],
                       ["my teacher", "the bassist", "the choir director", "my neighbour upstairs"]),
    "data analysis": (["spreadsheet", "survey sample", "regression model", "bar chart", "outlier", "pivot table",
                       "time series", "control group", "missing value", "dashboard"],
                      ["clean", "plot", "aggregate", "normalize", "filter", "resample", "validate", "summarize"],
                      ["skewed", "sparse", "noisy", "seasonal", "biased", "significant", "messy", "tidy"],
                      ["my manager", "the marketing team", "a reviewer", "my thesis advisor"]),
    "pet care": (["rescue dog", "litter box", "fish tank", "parrot cage", "flea treatment", "chew toy",
                  "vet appointment", "grooming brush", "cat tree", "leash"],
                 ["train", "feed", "groom", "socialize", "vaccinate", "walk", "reward", "introduce"],
                 ["anxious", "playful", "shy", "hyper", "picky", "elderly", "curious", "stubborn"],
                 ["the vet", "the shelter staff", "my roommate", "the dog walker"]),
    "history": (["medieval guild", "trade route", "printing press", "city charter", "harbour town",
                 "river canal", "royal archive", "railway boom", "textile mill", "postal service"],
                ["trace", "date", "compare", "reconstruct", "interpret", "catalogue", "question", "map"],
                ["forgotten", "contested", "influential", "fragile", "prosperous", "remote", "ancient",
                 "well-documented"],
                ["my history teacher", "the museum curator", "a local historian", "my book club"]),
    "writing and editing": (["cover letter", "short story", "grant proposal", "blog post", "meeting summary",
                             "product description", "wedding speech", "project report", "newsletter",
                             "thank-you note"],
                            ["shorten", "restructure", "proofread", "rewrite", "outline", "tighten", "soften",
                             "expand"],
                            ["wordy", "formal", "clumsy", "persuasive", "vague", "warm", "repetitive", "concise"],
                            ["my editor", "the hiring manager", "the committee", "my co-author"]),
    "language learning": (["verb conjugation", "flashcard deck", "listening exercise", "grammar rule",
                           "conversation class", "vocabulary list", "language exchange", "pronunciation drill",
                           "reading passage", "dictation"],
                          ["practise", "review", "pronounce", "translate", "memorize", "drill", "revisit",
                           "speak"],
                          ["irregular", "formal", "tricky", "idiomatic", "rusty", "fluent", "slow", "colloquial"],
                          ["my tutor", "my exchange partner", "the class", "my in-laws"]),
    "cycling and bikes": (["chain", "brake pad", "gear cable", "tyre pressure", "saddle height", "commute route",
                           "bike lock", "rear derailleur", "mudguard", "wheel bearing"],
                          ["adjust", "lubricate", "true", "inflate", "swap", "clean", "index", "store"],
                          ["squeaky", "worn", "wobbly", "slippery", "heavy", "reliable", "grimy", "loose"],
                          ["the bike shop", "my commuting buddy", "the club mechanic", "my cousin"]),
    "event planning": (["birthday party", "guest list", "venue booking", "catering order", "seating plan",
                        "playlist", "invitation", "decoration budget", "team offsite", "school fundraiser"],
                       ["organize", "confirm", "decorate", "schedule", "postpone", "coordinate", "price",
                        "announce"],
                       ["last-minute", "cozy", "noisy", "formal", "outdoor", "affordable", "crowded", "festive"],
                       ["the venue manager", "the caterer", "my co-organizer", "the guest of honour"]),
}

SYSTEM_PROMPTS = (
    "You are a helpful assistant. Answer clearly and keep a friendly tone.",
    "You are a patient tutor. Explain your reasoning step by step and check the learner's understanding.",
    "You are a concise expert on {topic}. Prefer short, practical answers and say when you are unsure.",
    ("You are an assistant for a small team. Use plain language, give concrete next steps, and avoid jargon "
     "unless the user uses it first."),
    ("You help people with {topic}. Ask a clarifying question when the request is ambiguous, otherwise "
     "answer directly. Mention safety issues when they matter."),
)

QUESTIONS = (
    "How should I {action} the {thing}?",
    "What is the best way to {action} a {quality} {thing}?",
    "Why does my {thing} always end up {quality}?",
    "Can you explain the difference between a {thing} and a {other}?",
    "Give me three tips to {action} the {thing} without making it {quality}.",
    "Is it worth it to {action} the {thing} before I {action2} the {other}?",
    "What would you say to {person}, who thinks the {thing} is too {quality}?",
    "Write a short checklist for when I {action} the {thing}.",
    "Summarize what I told you about the {thing} in two sentences.",
    "How long does it usually take to {action} a {thing}?",
)

FOLLOW_UPS = (
    "Thanks. And what if the {thing} is already {quality}?",
    "That helps. Could you go into more detail on the {other}?",
    "I tried that, but {person} says it made things {quality}. What now?",
    "Okay. Should I {action} the {other} first, or wait?",
    "Can you make that shorter and more practical?",
    "What mistakes do beginners make with the {thing}?",
    "Good point. How would that change if I had to {action} it every week?",
)

CONTEXT_SENTENCES = (
    "I have been working on the {thing} for about {n} weeks now.",
    "Last time I tried to {action} it, the result was {quality} and a bit disappointing.",
    "{Person} suggested I {action} the {other} instead, but I am not convinced.",
    "My budget is limited, so I would rather not buy a new {other}.",
    "The {thing} I have is fairly old and somewhat {quality}.",
    "I usually {action} it on weekends, since weekdays are busy.",
    "Everything was fine until I changed how I {action2} the {other}.",
    "I read somewhere that a {quality} {thing} is normal at first, but mine has stayed that way.",
    "To give you some background, {person} and I share the {thing} and we disagree on how to use it.",
    "I noticed the problem gets worse when the {other} is {quality}.",
    "My goal is to have the {thing} in good shape within {n} days.",
    "I kept notes: on day {n} I tried to {action} it, and on day {m} I tried to {action2} the {other}.",
)

ANSWER_SENTENCES = (
    "A good first step is to {action} the {thing} gently and check the result after a day.",
    "If the {thing} still looks {quality}, the usual cause is the {other}.",
    "Many people {action} the {other} too often, which makes everything {quality}.",
    "Keep a short log of when you {action} it, so you can see which change mattered.",
    "You do not need new equipment; the {other} you already have is enough.",
    "Try to {action2} the {other} before you {action} the {thing}, not after.",
    "It is normal for a {thing} to be {quality} at first, and it usually settles within {n} days.",
    "Ask {your_person} to help you check the {other}, since a second pair of eyes catches small problems.",
    "The main trade-off is time against quality: a {quality} result is faster, a careful one lasts longer.",
    "Here is a simple plan: first {action} the {thing}, then {action2} the {other}, then wait and compare.",
    "Avoid changing more than one thing at a time, or you will not know what helped.",
    "If you only remember one thing, remember to {action} the {thing} regularly rather than all at once.",
    "Be careful with the {other}: a {quality} {other} can hide the real problem.",
    "In my experience, {n} minutes a day is enough to keep the {thing} from becoming {quality}.",
)

PASTE_INTROS = (
    "Here are my notes so far:",
    "Below is the draft I wrote about the {thing}:",
    "This is what {person} sent me:",
    "For context, here is the plan I have been following:",
)


def lognormal_int(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return max(low, min(high, round(median * math.exp(rng.gauss(0.0, sigma)))))


def estimate(messages: list[dict]) -> int:
    """About how many prompt tokens MESSAGES become after the chat template."""
    return sum(TOKENS_PER_MESSAGE + round(len(m["content"].split()) * TOKENS_PER_WORD) for m in messages)


class Composer:
    """Fills the sentence templates of one conversation's topic."""

    def __init__(self, rng: random.Random, topic: str):
        self.rng, self.topic = rng, topic
        self.things, self.actions, self.qualities, self.people = TOPICS[topic]

    def fill(self, template: str) -> str:
        r = self.rng
        thing, other = r.sample(self.things, 2)
        action, action2 = r.sample(self.actions, 2)
        person = r.choice(self.people)
        return template.format(thing=thing, other=other, action=action, action2=action2,
                               quality=r.choice(self.qualities), person=person, Person=person[0].upper() + person[1:],
                               your_person=person.replace("my ", "your ", 1),
                               topic=self.topic, n=r.randint(2, 30), m=r.randint(31, 60))

    def sentences(self, pool: tuple[str, ...], words: int) -> str:
        """Sentences from POOL until about WORDS words."""
        out: list[str] = []
        while sum(len(s.split()) for s in out) < words:
            out.append(self.fill(self.rng.choice(pool)))
        return " ".join(out)

    def pasted(self, words: int) -> str:
        """A block the user pastes in: numbered notes, then a paragraph."""
        intro = self.fill(self.rng.choice(PASTE_INTROS))
        lines, used = [], 0
        while used < words:
            line = f"{len(lines) + 1}. {self.fill(self.rng.choice(CONTEXT_SENTENCES + ANSWER_SENTENCES))}"
            lines.append(line)
            used += len(line.split())
        return intro + "\n" + "\n".join(lines)


def conversation(rng: random.Random) -> dict:
    """One line of the file: lengths first, then the text that fits them."""
    composer = Composer(rng, rng.choice(sorted(TOPICS)))
    target = lognormal_int(rng, PROMPT_MEDIAN, PROMPT_SIGMA, *PROMPT_RANGE)
    max_tokens = lognormal_int(rng, OUTPUT_MEDIAN, OUTPUT_SIGMA, *OUTPUT_RANGE)
    system = ([{"role": "system", "content": composer.fill(rng.choice(SYSTEM_PROMPTS))}]
              if target > 90 and rng.random() < 0.6 else [])
    question = composer.fill(rng.choice(QUESTIONS))
    budget_words = max(0, round((target - estimate(system) - TOKENS_PER_MESSAGE) / TOKENS_PER_WORD)
                       - len(question.split()))
    # Long prompts are either many turns of history or one long pasted document, as in real chats.
    exchanges = min(7, budget_words // 90) if rng.random() < 0.7 else min(1, budget_words // 90)
    history: list[dict] = []
    per_exchange = budget_words // (exchanges + 1) if exchanges else 0
    for i in range(exchanges):
        opener = composer.fill(rng.choice(QUESTIONS if i == 0 else FOLLOW_UPS))
        history.append({"role": "user", "content": opener})
        history.append({"role": "assistant",
                        "content": composer.sentences(ANSWER_SENTENCES, max(8, per_exchange - len(opener.split())))})
    left = budget_words - sum(len(m["content"].split()) for m in history)
    if left < 12:
        last = question
    elif left > 150 and rng.random() < 0.5:
        last = composer.pasted(left) + "\n\n" + question
    else:
        last = composer.sentences(CONTEXT_SENTENCES, left) + " " + question
    messages = system + history + [{"role": "user", "content": last}]
    # A prompt and its answer must fit the tiny CPU model's context, with room for the estimate's error.
    max_tokens = max(OUTPUT_RANGE[0], min(max_tokens, CONTEXT - round(estimate(messages) * 1.15) - 16))
    return {"messages": messages, "max_tokens": max_tokens}


def chat_prompts(seed: int = SEED, count: int = COUNT) -> str:
    rng = random.Random(seed)
    return "".join(json.dumps(conversation(rng), ensure_ascii=False) + "\n" for _ in range(count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if OUT differs from what this writes")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT.relative_to(REPO)})")
    args = parser.parse_args()
    text = chat_prompts()
    if args.check:
        if not args.out.exists() or args.out.read_text(encoding="utf-8") != text:
            sys.exit(f"{args.out} is not what tools/make_chat_prompts.py writes: run it and commit the file")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {COUNT} conversations to {args.out}")


if __name__ == "__main__":
    main()

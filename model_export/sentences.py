"""The fixed validation sentences: real English, mixed lengths, some with [MASK] (one has two).

`[MASK]` is replaced by the checkpoint's own mask token before tokenizing. Classifiers are also
validated on sentence pairs, as rerankers (query, passage) and NLI models (premise, hypothesis) read them.
"""

from __future__ import annotations

MASK = "[MASK]"

VALIDATION_SENTENCES: tuple[str, ...] = (
    "The capital of France is [MASK].",
    "Hello, world.",
    "She poured a cup of [MASK] and sat down by the window to read the morning paper.",
    "Rain.",
    "The doctor told him to take the [MASK] twice a day with food.",
    "A quick brown fox jumps over the lazy dog.",
    "I left my keys on the kitchen [MASK] again.",
    "The committee will meet on Tuesday to discuss the budget for next year, "
    "including the cost of repairing the old library roof and hiring two more staff.",
    "The [MASK] barked at the mailman every morning.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "He plays the [MASK] in a small jazz band downtown.",
    "The train to London was delayed by twenty minutes because of [MASK] on the line.",
    "Can you recommend a good book?",
    "After the long winter, the [MASK] finally began to bloom in the garden.",
    "My brother works as a [MASK] at the hospital and often works night shifts.",
    "The stock market fell sharply on Monday after the central bank raised interest rates "
    "for the third time this year, and analysts expect further volatility in the coming weeks "
    "as investors weigh the risk of a recession against stubbornly high inflation.",
    "The children built a [MASK] out of snow in the park.",
    "Paris and [MASK] are two of the largest cities in [MASK].",
    "Thank you very much for your help yesterday.",
    "The meeting has been moved to [MASK] afternoon.",
)

VALIDATION_PAIRS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "Paris is the capital and largest city of France."),
    ("What is the capital of France?", "The Eiffel Tower was finished in 1889."),
    ("how long to boil an egg", "Boil the eggs for nine minutes, then cool them in cold water."),
    ("A man is playing a guitar on stage.", "A musician is performing."),
    ("A man is playing a guitar on stage.", "The stage is empty."),
    ("Rain.", "It is raining outside, so take an umbrella when you leave the house this morning."),
    ("The committee will meet on Tuesday to discuss the budget for next year.", "The meeting is about money."),
    ("Can you recommend a good book?", "I enjoyed the new novel about a lighthouse keeper and his daughter."),
)

"""The networks: RecurrentLM (a language model) and Encoder with its heads (SentenceClassifier,
WordTagger), all made of one recurrent stack (charnn.model.stack).

One contract for the language model: ``forward(tokens, state) -> (logits, state)``. The state
is a list with one tuple per layer: ``(h, c)`` for an LSTM, ``(h,)`` for a GRU or RNN, each
tensor shaped (1, B, H) as PyTorch's fused modules expect.
"""

from charnn.model.encoders import POOLS, Encoder, SentenceClassifier, WordTagger, mix
from charnn.model.lm import RecurrentLM, Stepper, check_language_model, int8_available
from charnn.model.stack import State, count_parameters, detach_state, run_stack, zero_state

__all__ = [
    "POOLS",
    "Encoder",
    "RecurrentLM",
    "SentenceClassifier",
    "mix",
    "State",
    "Stepper",
    "WordTagger",
    "check_language_model",
    "count_parameters",
    "detach_state",
    "int8_available",
    "run_stack",
    "zero_state",
]

"""text-chars: character-level English text shipped with Python (``pydoc_data.topics``).

The text is Python's own help-topic documentation (every topic, in sorted order), about 465k
characters. The vocabulary is every character that occurs in it. The character stream is cut
into contiguous blocks, 90 % train, 5 % val, 5 % test, and each block into non-overlapping
windows of ``time_bins`` characters: ``x`` [L, V] one-hot float32 (or [L] int64 indices with
``one_hot=False``) and ``y`` [L] int64, the next character of each position.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from hstlab.data.frames import check_time_bins

SPLIT_FRACTIONS = (0.9, 0.05, 0.05)


def corpus() -> str:
    """The full text (deterministic: topics concatenated in sorted key order)."""
    from pydoc_data.topics import topics

    return "".join(topics[k] for k in sorted(topics))


class TextChars(Dataset):
    """Next-character prediction windows over one contiguous block of the corpus.

    Example:
        >>> ds = TextChars("val", time_bins=32)
        >>> x, y = ds[0]; tuple(x.shape)[0], ds.decode(y[:5]) == ds.text[1:6]
        (32, True)
    """

    def __init__(
        self,
        split: str = "train",
        time_bins: int = 128,
        *,
        one_hot: bool = True,
        limit: int | None = None,
    ) -> None:
        self.time_bins = check_time_bins(time_bins)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split={split!r} is not allowed; allowed: train, val, test")
        full = corpus()
        self.vocab = sorted(set(full))
        self._index = {c: i for i, c in enumerate(self.vocab)}
        n = len(full)
        bounds = [0, int(n * SPLIT_FRACTIONS[0]), int(n * sum(SPLIT_FRACTIONS[:2])), n]
        k = ("train", "val", "test").index(split)
        self.split = split
        self.text = full[bounds[k] : bounds[k + 1]]
        self.one_hot = bool(one_hot)
        self._ids = self.encode(self.text)  # [N_chars]
        n_windows = max((len(self._ids) - 1) // self.time_bins, 0)
        self._n = n_windows if limit is None else min(n_windows, int(limit))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        """Characters -> indices [len(text)] (int64); unknown characters raise ValueError."""
        try:
            return torch.tensor([self._index[c] for c in text], dtype=torch.int64)
        except KeyError as err:
            raise ValueError(
                f"text contains {err.args[0]!r}, which is not in the vocabulary"
            ) from None

    def decode(self, ids) -> str:
        """Indices (any int sequence or tensor) -> string."""
        return "".join(self.vocab[int(i)] for i in ids)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self._n:
            raise IndexError(f"index {i} out of range for {self._n} windows")
        s = i * self.time_bins
        x = self._ids[s : s + self.time_bins]  # [L]
        y = self._ids[s + 1 : s + self.time_bins + 1]  # [L]
        if self.one_hot:
            x = torch.nn.functional.one_hot(x, self.vocab_size).float()  # [L, V]
        return x, y

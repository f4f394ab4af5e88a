"""Login brute-force lockout (pure bookkeeping, no I/O).

Failed logins are counted per account and per client address over a sliding
window; at ``attempts`` failures the account (or address) is locked for
``seconds``, during which even the right password is refused — otherwise the
lock would only slow a guesser down, not stop one. A success clears the
account's count. Addresses in ``exempt`` networks (the node's own tooling on
loopback) are only ever limited through the account. Memory is bounded.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from metrics.clients import EXEMPT, ClientKeys

MAX_TRACKED = 100_000


@dataclass
class LoginLockout:
    attempts: int = 5
    """Failures within ``seconds`` that lock; 0 turns the lockout off."""
    seconds: float = 900.0
    exempt: Sequence[str] = ("127.0.0.0/8", "::1/128")
    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _locked: dict[str, float] = field(default_factory=dict)
    _keys: ClientKeys = field(init=False)

    def __post_init__(self) -> None:
        self._keys = ClientKeys(self.exempt)

    def reconfigure(self, attempts: int, seconds: float, exempt: Sequence[str]) -> None:
        """New settings (a reload); the failures and locks so far stay."""
        self.attempts, self.seconds, self.exempt = attempts, seconds, exempt
        self._keys = ClientKeys(exempt)

    def _subjects(self, login: str, address: str) -> list[str]:
        subjects = [f"account:{login.strip().lower()}"]
        client = self._keys.key(address) if address else EXEMPT
        if client != EXEMPT:
            subjects.append(f"client:{client}")
        return subjects

    def locked_for(self, login: str, address: str) -> float:
        """Seconds the account or the address stays locked (0: not locked)."""
        if not self.attempts:
            return 0.0
        now = self.clock()
        left = 0.0
        for subject in self._subjects(login, address):
            until = self._locked.get(subject)
            if until is None:
                continue
            if until <= now:
                del self._locked[subject]
            else:
                left = max(left, until - now)
        return left

    def failed(self, login: str, address: str) -> None:
        if not self.attempts:
            return
        now = self.clock()
        for subject in self._subjects(login, address):
            recent = self._failures.get(subject)
            if recent is None:
                if len(self._failures) >= MAX_TRACKED:
                    self._failures.popitem(last=False)
                recent = self._failures[subject] = deque(maxlen=self.attempts)
            self._failures.move_to_end(subject)
            recent.append(now)
            while recent and recent[0] <= now - self.seconds:
                recent.popleft()
            if len(recent) >= self.attempts:
                if len(self._locked) >= MAX_TRACKED:
                    self._locked.clear()  # forgetting locks errs towards letting in
                self._locked[subject] = now + self.seconds
                recent.clear()

    def succeeded(self, login: str) -> None:
        self._failures.pop(f"account:{login.strip().lower()}", None)

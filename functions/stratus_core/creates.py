"""Creates that a client's retry cannot double: batches, files, tenants and keys.

A create whose write landed but whose answer was lost (a 5xx after DynamoDB took the item, a
function that timed out) is retried by its client. Without care the retry makes a second batch,
file or key. The retry is recognised as completions' retries are (`inference.retry_identity`):
by an `Idempotency-Key` header (the first create with a key wins; the same key with another body
is a 409), or, from the official SDKs, which send no key, by the identical body resent with
`x-stainless-retry-count` ≥ 1 within an hour.

Before it writes anything, a create claims its fingerprint for the id it is about to use (a
`CLAIM#` item, the one completions use). A retry that finds the claim makes its object under the
claimed id, and every create is idempotent for a given id: it returns the object that exists (or
makes it, when the first attempt failed before writing it). So one object results, whichever
attempt's answer the client finally reads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from stratus_core.admission import Claim, ClaimedJob, ClaimTaken
from stratus_core.clock import utcnow
from stratus_core.errors import IdempotencyMismatch
from stratus_core.inference import RetryIdentity


class CreateClaims(Protocol):
    def put_claim(self, tenant_id: str, job_id: str, claim: Claim, now: datetime) -> None: ...

    def find_claim(self, tenant_id: str, fingerprint: str, now: datetime) -> ClaimedJob | None: ...


class RetriedCreates:
    def __init__(self, claims: CreateClaims, clock: Callable[[], datetime] = utcnow) -> None:
        self._claims = claims
        self._clock = clock

    def object_id(self, identity: RetryIdentity | None, owner: str, new_id: Callable[[], str]) -> tuple[str, bool]:
        """The id this create makes its object under, and whether an earlier attempt claimed it
        (the object may exist already). `owner` is the caller's tenant: claims are per tenant."""
        if identity is None:
            return new_id(), False
        now = self._clock()
        if identity.is_retry:
            found = self._claims.find_claim(owner, identity.fingerprint, now)
            if found is not None:
                return self._same_body(found, identity), True
        object_id = new_id()
        claim = Claim(
            identity.fingerprint, identity.body_hash, identity.exclusive, int((now + identity.ttl).timestamp())
        )
        try:
            self._claims.put_claim(owner, object_id, claim, now)
        except ClaimTaken as taken:  # an earlier create with the same Idempotency-Key
            return self._same_body(taken.claimed, identity), True
        return object_id, False

    @staticmethod
    def _same_body(claimed: ClaimedJob, identity: RetryIdentity) -> str:
        if claimed.body_hash != identity.body_hash:
            raise IdempotencyMismatch("this Idempotency-Key was used with a different request body")
        return claimed.job_id

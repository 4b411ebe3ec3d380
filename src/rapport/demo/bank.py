"""What the bank's systems send: the Segment messages of its site and app, its processing,
its scoring and its telephony.

The bank reuses the shop's message plumbing (``Shop``: message ids that carry the seed,
timestamps, SDK retries, the outbox, phone numbers written the way people type them) and
sends the events the bank playbooks read (docs/scenarios.md, "The playbook library"):

* ``Application Submitted`` (``application_id``, ``product_id``, ``category``, ``amount``),
  then ``Application Approved`` or ``Application Declined``;
* ``Card Activated`` (``card_id``, ``application_id``, ``product``) for a card,
  ``Product Activated`` for an account, a loan or a policy;
* ``Transaction Made`` (``transaction_id``, ``card_id``, ``amount``, ``merchant``,
  ``category``) for each card purchase, and the same purchase as ``Order Completed``
  (``order_id`` = the transaction id, ``channel: "card"``), so revenue, RFM, LTV and
  attribution read card spend;
* ``Login`` from the app or the website; an app's first login registers its push token,
  as ``POST /v1/push/subscriptions`` does;
* ``Support Call`` from telephony, known only by the caller's number;
* ``identify`` with ``traits.score`` whenever the scoring system scores the customer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rapport.demo.bank_catalog import CARD, CATEGORY_BY_ID, CURRENCY, BankProduct
from rapport.demo.bank_people import SCORE_HIGH, SCORE_LOW, BankCustomer
from rapport.demo.bank_schedule import Application
from rapport.demo.schedule import DAY
from rapport.demo.shop import Outbox, Shop, display_phone, iso
from rapport.messaging.push_subscriptions import SUBSCRIBED_EVENT

# Not a Segment call: the demo's stand-in for a POST to /v1/push/subscriptions, which the
# loader hands to the same functions the route calls (bank_history.BankLoader).
PUSH_SUBSCRIPTION = "push_subscription"
BIG_PURCHASE_FROM = 30_000.0
# (merchant category, share of everyday purchases); large ones are in the last three.
MERCHANTS = (
    ("groceries", 0.34), ("restaurants", 0.14), ("transport", 0.1), ("fuel", 0.08),
    ("pharmacy", 0.06), ("clothing", 0.08), ("entertainment", 0.07), ("utilities", 0.05),
    ("electronics", 0.03), ("travel", 0.03), ("furniture", 0.02),
)  # fmt: skip
_BIG = ("electronics", "travel", "furniture")
CALL_TOPICS = ("card blocked", "transaction dispute", "application status", "limits", "app login")


class Bank(Shop):
    """The bank's side: one method per kind of planned visit (``bank_schedule``)."""

    def __init__(
        self,
        rng: np.random.Generator,
        catalog: list[BankProduct],
        start: float,
        seed: int,
        outbox: Outbox,
        tag: str = "",
    ) -> None:
        super().__init__(rng, [], start, seed, outbox, tag=tag)
        self.catalog = catalog
        self.offer: dict[str, list[BankProduct]] = {}  # by category
        for p in catalog:
            self.offer.setdefault(p.category, []).append(p)
        weights = np.array([w for _, w in MERCHANTS])
        self._merchant_p = weights / weights.sum()

    # -- building blocks -------------------------------------------------------------

    def _send_dated(self, moment: float, occurred: float, raw: dict[str, Any]) -> None:
        """Sent at ``moment`` about something that happened at ``occurred``: a back-office
        load of what happened before the bank used Rapport (sent once, no retries)."""
        self._message_seq += 1
        raw["messageId"] = f"demo{self.seed}{self.tag}-{self._message_seq:08d}"
        raw["timestamp"] = iso(occurred)
        self.outbox.put(moment, raw)

    def _traits(self, c: BankCustomer, moment: float, scored: bool) -> dict[str, Any]:
        traits = self._identify_traits(c, moment)
        # A bank records the opt-ins it was given; no opt-in is no consent, not an opt-out
        # (which would stop the service SMS too).
        traits["consents"] = {channel: True for channel, given in c.consents.items() if given}
        traits["app_user"] = c.app_user
        if scored:
            traits["score"] = c.score
        return traits

    def _register(self, c: BankCustomer, moment: float) -> float:
        """Registration on the site or in the app: the full card, merging the device's
        anonymous browsing."""
        if c.registered:
            return moment
        c.registered = True
        self.stats.signups += 1
        device = self._device(c)
        c.logged_in.add(device)
        self._send(
            moment,
            {
                "type": "identify",
                "userId": c.user_id,
                "anonymousId": device,
                "traits": self._traits(c, moment, scored=False),
            },
        )
        return self._next(moment)

    def _view(self, who: dict[str, Any], product: BankProduct, moment: float) -> float:
        self.page(moment, who, product.name, f"/products/{product.id}")
        moment = self._next(moment)
        self.track(moment, who, "Product Viewed", product.properties())
        return self._next(moment)

    # -- planned visits --------------------------------------------------------------

    def existing(self, c: BankCustomer, moment: float, held: Application | None) -> None:
        """An existing customer: the back office sends the card (with the score) and the
        card's activation, dated when it happened."""
        traits = self._traits(c, moment, scored=True)
        del traits["createdAt"]
        c.registered = True
        self._send(moment, {"type": "identify", "userId": c.user_id, "traits": traits})
        if held is None or held.card_id is None:
            return
        c.cards.append(held.card_id)
        c.products.add(held.product.id)
        since = moment - float(self.rng.uniform(30, 900)) * DAY
        self._send_dated(
            moment + 1.0,
            since,
            {
                "type": "track",
                "userId": c.user_id,
                "event": "Card Activated",
                "properties": self._card_props(held),
            },
        )

    def look(self, c: BankCustomer, moment: float, app: Application | None) -> None:
        """Product pages on the site: the product about to be applied for, or a few."""
        c.last_visit = moment
        who = {"userId": c.user_id} if c.registered else {"anonymousId": self._device(c)}
        self.page(moment, who, "Home", "/")
        moment = self._next(moment)
        if app is not None:
            self._view(who, app.product, moment)
            return
        categories = list(CATEGORY_BY_ID) if c.registered else ["debit-cards", "credit-cards"]
        for _ in range(1 + int(self.rng.poisson(1.0))):
            options = self.offer[categories[int(self.rng.integers(len(categories)))]]
            day = self._day(moment)
            on_sale = [p for p in options if p.arrives_day <= day]
            moment = self._view(who, on_sale[int(self.rng.integers(len(on_sale)))], moment)

    def login(self, c: BankCustomer, moment: float) -> None:
        if not c.registered:
            return
        c.last_visit = moment
        channel = "app" if c.app_user else "web"
        props = {"channel": channel, "platform": c.platform if c.app_user else "web"}
        self.track(moment, {"userId": c.user_id}, "Login", props)
        if c.app_user and not c.subscribed:
            c.subscribed = True
            token = f"fcm-{self._uuid()}"
            raw: dict[str, Any] = {
                "type": PUSH_SUBSCRIPTION,
                "event": SUBSCRIBED_EVENT,
                "userId": c.user_id,
                "fcm": {"token": token, "platform": c.platform},
            }
            self._send(moment + 2.0, raw)

    def apply(self, c: BankCustomer, moment: float, app: Application) -> None:
        moment = self._register(c, moment)
        props: dict[str, Any] = {
            "application_id": app.id,
            "product_id": app.product.id,
            "product": app.product.name,
            "category": app.product.category,
            "currency": CURRENCY,
            "channel": "app" if c.app_user else "web",
        }
        if app.amount is not None:
            props["amount"] = app.amount
        self.track(moment, {"userId": c.user_id}, "Application Submitted", props)

    def decide(self, c: BankCustomer, moment: float, app: Application) -> None:
        """The scoring system's answer: the score on the card, then the decision."""
        self._send(moment, {"type": "identify", "userId": c.user_id, "traits": {"score": c.score}})
        event = "Application Approved" if app.approved else "Application Declined"
        props = {"application_id": app.id, "product_id": app.product.id,
                 "category": app.product.category}  # fmt: skip
        self.track(moment + 1.0, {"userId": c.user_id}, event, props)

    def activate(self, c: BankCustomer, moment: float, app: Application) -> None:
        who = {"userId": c.user_id}
        c.products.add(app.product.id)
        if app.product.kind == CARD and app.card_id is not None:
            c.cards.append(app.card_id)
            self.track(moment, who, "Card Activated", self._card_props(app))
            return
        props: dict[str, Any] = {
            "application_id": app.id,
            "product_id": app.product.id,
            "product": app.product.name,
            "category": app.product.category,
        }
        if app.amount is not None:
            props.update(amount=app.amount, currency=CURRENCY)
        self.track(moment, who, "Product Activated", props)

    def _card_props(self, app: Application) -> dict[str, Any]:
        return {
            "card_id": app.card_id,
            "application_id": app.id,
            "product_id": app.product.id,
            "product": app.product.name,
            "category": app.product.category,
        }

    def purchase(self, c: BankCustomer, moment: float, big: bool) -> str | None:
        """A card purchase, from processing: the event and the same purchase as an order."""
        if not c.cards:
            return None
        rng = self.rng
        if big:
            merchant = _BIG[int(rng.integers(len(_BIG)))]
            amount = BIG_PURCHASE_FROM * (1.0 + float(rng.exponential(0.8)))
        else:
            merchant = MERCHANTS[int(rng.choice(len(MERCHANTS), p=self._merchant_p))][0]
            amount = float(rng.lognormal(np.log(c.ticket) - 0.32, 0.8))
        amount = round(max(amount, 50.0), 2)
        tx = self._order_id("T")
        who = {"userId": c.user_id}
        props = {"transaction_id": tx, "card_id": c.cards[0], "amount": amount,
                 "currency": CURRENCY, "merchant": f"{merchant}-{int(rng.integers(1, 40)):02d}",
                 "category": merchant}  # fmt: skip
        self.track(moment, who, "Transaction Made", props)
        order = {"order_id": tx, "channel": "card", "total": amount, "revenue": amount,
                 "currency": CURRENCY, "category": merchant, "card_id": c.cards[0]}  # fmt: skip
        self.track(moment + 0.5, who, "Order Completed", order)
        c.last_order = moment
        return tx

    def support_call(self, c: BankCustomer | None, moment: float) -> None:
        """A call to support: telephony knows only the caller's number."""
        rng = self.rng
        if c is not None and c.phone is not None:
            phone = display_phone(c.phone, rng)
            self.stats.calls_known += 1
        else:
            tail = f"{int(rng.integers(100, 1000))}-{int(rng.integers(10, 100))}-{int(rng.integers(10, 100))}"  # fmt: skip
            phone = f"+7 (495) {tail}"
            self.stats.calls_unknown += 1
        props = {"direction": "inbound", "duration_s": int(rng.gamma(2.0, 120.0)) + 15,
                 "queue": "support", "topic": CALL_TOPICS[int(rng.integers(len(CALL_TOPICS)))],
                 "outcome": "resolved" if rng.random() < 0.7 else "escalated"}  # fmt: skip
        self._send(
            moment,
            {
                "type": "track",
                "anonymousId": f"call-{self._uuid()}",
                "event": "Support Call",
                "properties": props,
                "context": {"traits": {"phone": phone}},
            },
        )

    def rescore(self, c: BankCustomer, moment: float) -> None:
        """The monthly re-scoring: the score drifts a little."""
        if not c.registered:
            return
        drift = round(float(self.rng.normal(0, 12)))
        c.score = int(np.clip(c.score + drift, SCORE_LOW, SCORE_HIGH))
        self._send(moment, {"type": "identify", "userId": c.user_id, "traits": {"score": c.score}})

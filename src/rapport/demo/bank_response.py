"""What messages cause at the demo bank, acted out on a random stream of its own.

A click on a bank e-mail (``bank_simulate.BankResponder`` says which) becomes a purchase
with the customer's card, or an application for a product of the offer's category that
is decided by the score and opened later. Like the shop's caused orders, nothing here
changes what the baseline draws on (the customer's cards and products stay as the
baseline made them), so the baseline customers go on exactly as planned whatever the
messages did, and two strategies on one seed differ only by what their messages caused.
"""

from __future__ import annotations

from rapport.demo.bank import Bank
from rapport.demo.bank_catalog import CARD
from rapport.demo.bank_people import BankCustomer
from rapport.demo.bank_schedule import HOUR, Application, application_amount
from rapport.demo.schedule import DAY


class ResponseBank(Bank):
    """The bank's second stream: its message ids and order ids carry an ``r``."""

    def respond(self, c: BankCustomer, moment: float, category: str | None) -> None:
        """A card purchase (``category`` None) or an application for a ``category``
        product; someone without an active card, or never registered, does nothing."""
        if not c.registered:
            return
        self.stats.response_orders += 1
        if category is None:
            tx = self.purchase(c, moment, big=False)
            if tx is not None:
                self.response_order_ids.append(tx)
            return
        rng = self.rng
        day = self._day(moment)
        options = [p for p in self.offer.get(category, []) if p.arrives_day <= day]
        if not options:
            return
        product = options[int(rng.integers(len(options)))]
        self._view({"userId": c.user_id}, product, moment)
        n = self.stats.response_orders
        decided = moment + float(rng.uniform(0.2, 26.0)) * HOUR
        app = Application(
            f"A-{c.user_id}-r{n}",
            c.index,
            product,
            application_amount(rng, product),
            submitted=moment + 120.0,
            decided=decided,
            approved=c.score >= product.min_score,
            activated=None,
            card_id=f"card-{c.user_id}-r{n}" if product.kind == CARD else None,
        )
        self.apply(c, app.submitted, app)
        self.decide(c, app.decided, app)
        if app.approved:
            wait = (
                rng.uniform(3.0, 8.0) * DAY
                if product.kind == CARD
                else rng.uniform(0.1, 48.0) * HOUR
            )
            self._activated(c, decided + float(wait), app)

    def _activated(self, c: BankCustomer, moment: float, app: Application) -> None:
        """An activation the baseline does not know of: the event only, no state."""
        who = {"userId": c.user_id}
        if app.product.kind == CARD:
            self.track(moment, who, "Card Activated", self._card_props(app))
            return
        props = {
            "application_id": app.id,
            "product_id": app.product.id,
            "product": app.product.name,
            "category": app.product.category,
        }
        self.track(moment, who, "Product Activated", props)

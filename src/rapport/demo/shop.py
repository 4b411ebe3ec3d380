"""What happens on a visit: the Segment messages a real shop's site, tills and phones send.

Each method acts out one visit and hands its messages, with the moment each one is sent,
to an outbox. Later consequences (a cancellation hours after an order, a refund days after)
are queued for their own moment, so the stream stays in time order.
"""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from rapport.demo.catalog import CATEGORIES, CATEGORY_BY_ID, CURRENCY, SHOP_URL, Product
from rapport.demo.catalog import season_weight as _season_weight
from rapport.demo.people import Person
from rapport.demo.schedule import DAY

CALL_TOPICS = ("order status", "returns", "size advice", "delivery", "loyalty card")
FREE_SHIPPING_FROM = 5000.0
SHIPPING = 390.0


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def display_phone(e164: str, rng: np.random.Generator) -> str:
    """As people type them: the ingest path has to normalise these to E.164."""
    if e164.startswith("+7") and len(e164) == 12:
        n = e164[2:]
        if rng.random() < 0.5:
            return f"8 ({n[:3]}) {n[3:6]}-{n[6:8]}-{n[8:]}"
        return f"+7 {n[:3]} {n[3:6]}-{n[6:8]}-{n[8:]}"
    return e164


@dataclass
class ShopStats:
    """Facts only the shop knows (who called); message counts are taken as they are sent."""

    signups: int = 0
    calls_known: int = 0
    calls_unknown: int = 0
    response_orders: int = 0  # orders messages caused (the simulation's planted effect)


class Outbox:
    """Messages waiting for their moment, in the order they are sent."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, dict[str, Any], bool]] = []
        self._seq = 0

    def put(self, moment: float, raw: dict[str, Any], *, duplicate: bool = False) -> None:
        heapq.heappush(self._heap, (moment, self._seq, raw, duplicate))
        self._seq += 1

    def pop_until(self, moment: float) -> list[tuple[float, dict[str, Any], bool]]:
        """Messages due by ``moment``: (when sent, the message, whether it is a resend)."""
        out = []
        while self._heap and self._heap[0][0] <= moment:
            at, _, raw, duplicate = heapq.heappop(self._heap)
            out.append((at, raw, duplicate))
        return out

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class Visitor:
    """Someone who browses and never tells us who they are."""

    device: str
    weights: np.ndarray
    cart: list[tuple[str, int]] = field(default_factory=list)


class Shop:
    def __init__(
        self,
        rng: np.random.Generator,
        catalog: list[Product],
        start: float,
        seed: int,
        outbox: Outbox,
        duplicate_rate: float = 0.003,
        tag: str = "",
    ) -> None:
        self.rng = rng
        # Goes into message and order ids, so two shops on one seed never share an id.
        self.tag = tag
        self.start = start
        self.seed = seed
        self.outbox = outbox
        self.duplicate_rate = duplicate_rate
        self.stats = ShopStats()
        self.products = {p.id: p for p in catalog}
        self.by_category: dict[str, list[Product]] = {c.id: [] for c in CATEGORIES}
        for p in sorted(catalog, key=lambda p: (p.price, p.id)):
            self.by_category[p.category].append(p)
        self._message_seq = 0
        self._order_seq = 0
        self.response_order_ids: list[str] = []

    # -- building blocks -------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(bytes=self.rng.bytes(16), version=4))

    def _send(self, moment: float, raw: dict[str, Any]) -> None:
        self._message_seq += 1
        raw["messageId"] = f"demo{self.seed}{self.tag}-{self._message_seq:08d}"
        raw["timestamp"] = iso(moment)
        self.outbox.put(moment, raw)
        if self.rng.random() < self.duplicate_rate:
            # An SDK retry after a lost answer: same messageId, a little later.
            self.outbox.put(moment + float(self.rng.uniform(5, 300)), dict(raw), duplicate=True)

    def _who(self, person: Person | None, device: str | None) -> dict[str, Any]:
        who: dict[str, Any] = {}
        if (person is not None and device is not None and device in person.logged_in) or (
            person is not None and device is None
        ):
            who["userId"] = person.user_id
        if device is not None:
            who["anonymousId"] = device
        return who

    def track(self, moment: float, who: dict[str, Any], event: str, props: dict[str, Any]) -> None:
        self._send(moment, {"type": "track", **who, "event": event, "properties": props})

    def page(self, moment: float, who: dict[str, Any], name: str, path: str, **extra: Any) -> None:
        raw: dict[str, Any] = {
            "type": "page",
            **who,
            "name": name,
            "properties": {"path": path, "url": SHOP_URL + path, "title": name},
        }
        raw.update(extra)
        self._send(moment, raw)

    def _next(self, moment: float) -> float:
        return moment + 5.0 + float(self.rng.exponential(40.0))

    def _day(self, moment: float) -> int:
        return int((moment - self.start) // DAY)

    def _category(self, weights: np.ndarray, moment: float) -> str:
        month = datetime.fromtimestamp(moment, UTC).month
        w = weights * np.array([_season_weight(c, month) for c in CATEGORIES])
        return CATEGORIES[int(self.rng.choice(len(CATEGORIES), p=w / w.sum()))].id

    def _product(self, category: str, moment: float, level: float) -> Product:
        """A product on sale by then, near the customer's usual price level."""
        day = self._day(moment)
        options = [p for p in self.by_category[category] if p.arrives_day <= day]
        quantile = np.clip(0.5 + 0.3 * np.log(level) + self.rng.normal(0, 0.2), 0, 1)
        return options[round(float(quantile) * (len(options) - 1))]

    def _line(self, product: Product, quantity: int) -> dict[str, Any]:
        line = product.properties()
        line["quantity"] = quantity
        return line

    # -- a session on the site -------------------------------------------------------

    def _device(self, person: Person) -> str:
        if not person.devices or (len(person.devices) < 3 and self.rng.random() < 0.08):
            person.devices.append(self._uuid())
        return person.devices[int(self.rng.integers(len(person.devices)))]

    def _identify_traits(self, person: Person, moment: float) -> dict[str, Any]:
        traits: dict[str, Any] = {
            "firstName": person.first_name,
            "lastName": person.last_name,
            "email": person.email,
            "gender": person.gender,
            "birthday": person.birthday.isoformat(),
            "address": {"city": person.city.name, "country": person.city.country},
            "timezone": person.city.timezone,
            "locale": person.locale,
            "consents": dict(person.consents),
            "createdAt": iso(moment),
            "acquisition_channel": person.acquisition,
        }
        if person.phone is not None:
            traits["phone"] = display_phone(person.phone, self.rng)
        return traits

    def _sign_in(self, person: Person, device: str, moment: float, signup_due: bool) -> float:
        """Register (full traits) or log in on this device; afterwards messages carry userId."""
        if device in person.logged_in:
            return moment
        if not person.registered and signup_due:
            person.registered = True
            person.logged_in.add(device)
            self.stats.signups += 1
            self._send(
                moment,
                {
                    "type": "identify",
                    "userId": person.user_id,
                    "anonymousId": device,
                    "traits": self._identify_traits(person, moment),
                },
            )
            return self._next(moment)
        if person.registered:
            person.logged_in.add(device)
            self._send(
                moment,
                {
                    "type": "identify",
                    "userId": person.user_id,
                    "anonymousId": device,
                    "traits": {"email": person.email},
                },
            )
            return self._next(moment)
        return moment

    def browse(self, person: Person, moment: float, signup_due: bool, buy: bool) -> float:
        """A visit: pages, lists and filters, product views, maybe a cart, maybe an order."""
        rng = self.rng
        person.last_visit = moment
        device = self._device(person)
        if person.registered and device not in person.logged_in and rng.random() < 0.6:
            moment = self._sign_in(person, device, moment, signup_due)
        who = self._who(person, device)
        campaign = {}
        if person.acquisition in ("search_ads", "social") and rng.random() < 0.3:
            campaign = {"context": {"campaign": {"source": person.acquisition, "medium": "cpc"}}}
        self.page(moment, who, "Home", "/", **campaign)
        moment = self._next(moment)
        if (
            person.newsletter_first
            and not person.registered
            and "newsletter" not in person.logged_in
        ):
            person.logged_in.add("newsletter")
            person.consents["email"] = True
            self._send(
                moment,
                {
                    "type": "identify",
                    "anonymousId": device,
                    "traits": {"email": person.email, "consents": {"email": True}},
                },
            )
            moment = self._next(moment)
        category = self._category(person.category_weights, moment)
        moment = self._look_around(who, category, moment, person.spend_level)
        if buy or (not person.registered and signup_due):
            moment = self._sign_in(person, device, moment, True)
            who = self._who(person, device)
        if buy:
            return self._checkout(person, who, category, moment)
        if rng.random() < 0.18:
            moment = self._abandon(who, person.cart, category, moment, person.spend_level)
        return moment

    def response_purchase(self, person: Person, moment: float, category: str | None) -> float:
        """An order a message caused: from the e-mail's link straight to the product.

        The customer arrives signed in (the link knows them), so nothing here touches the
        state the baseline shop draws on (their cart, devices, order count): the baseline
        goes on exactly as planned whatever the messages did. Someone never registered
        (an e-mail from a newsletter form) does not buy this way.
        """
        if not person.registered:
            return moment
        self.stats.response_orders += 1
        who = {"userId": person.user_id}
        category = category or self._category(person.category_weights, moment)
        product = self._product(category, moment, person.spend_level)
        self.track(moment, who, "Product Viewed", product.properties())
        cart: list[tuple[str, int]] = []
        moment = self._next(moment)
        self._add(who, cart, product, moment)
        moment = self._next(moment)
        self.track(moment, who, "Checkout Started", self._order_props(cart, None))
        moment = self._next(moment)
        props = {"order_id": self._order_id("E"), **self._order_props(cart, None)}
        self.track(moment, who, "Order Completed", props)
        self.response_order_ids.append(props["order_id"])
        person.last_order = max(person.last_order, moment)
        self._aftermath(who, props, moment)
        return moment

    def visitor(self, visitor: Visitor, moment: float) -> None:
        who = {"anonymousId": visitor.device}
        self.page(moment, who, "Home", "/")
        category = self._category(visitor.weights, moment)
        moment = self._look_around(who, category, self._next(moment), 1.0)
        if self.rng.random() < 0.1:
            self._abandon(who, visitor.cart, category, moment, 1.0)

    def _look_around(
        self, who: dict[str, Any], category: str, moment: float, level: float
    ) -> float:
        rng = self.rng
        spec = CATEGORY_BY_ID[category]
        self.page(moment, who, spec.name, f"/c/{category}")
        moment = self._next(moment)
        self.track(moment, who, "Product List Viewed", {"list_id": category, "category": category})
        if rng.random() < 0.45:
            moment = self._next(moment)
            filters = [{"type": "size", "value": spec.sizes[int(rng.integers(len(spec.sizes)))]}]
            if rng.random() < 0.5:
                filters.append({"type": "color", "value": "black"})
            self.track(
                moment,
                who,
                "Product List Filtered",
                {
                    "list_id": category,
                    "category": category,
                    "filters": filters,
                    "sorts": [{"type": "price", "value": "asc" if rng.random() < 0.6 else "desc"}],
                },
            )
        for _ in range(1 + int(rng.poisson(2.0))):
            moment = self._next(moment)
            self.track(
                moment, who, "Product Viewed", self._product(category, moment, level).properties()
            )
        return self._next(moment)

    def _add(
        self, who: dict[str, Any], cart: list[tuple[str, int]], product: Product, moment: float
    ) -> None:
        quantity = 2 if product.category == "socks" and self.rng.random() < 0.4 else 1
        cart.append((product.id, quantity))
        self.track(moment, who, "Product Added", self._line(product, quantity))

    def _abandon(
        self,
        who: dict[str, Any],
        cart: list[tuple[str, int]],
        category: str,
        moment: float,
        level: float,
    ) -> float:
        """Something goes into the cart and stays there: the abandoned-cart case."""
        rng = self.rng
        self._add(who, cart, self._product(category, moment, level), moment)
        moment = self._next(moment)
        if rng.random() < 0.5:
            self.track(moment, who, "Cart Viewed", {"products": self._lines(cart)})
            moment = self._next(moment)
            if rng.random() < 0.3:
                self.track(moment, who, "Checkout Started", self._order_props(cart, None))
                moment = self._next(moment)
        return moment

    def _lines(self, cart: list[tuple[str, int]]) -> list[dict[str, Any]]:
        return [self._line(self.products[pid], qty) for pid, qty in cart]

    def _order_props(self, cart: list[tuple[str, int]], coupon: str | None) -> dict[str, Any]:
        lines = self._lines(cart)
        subtotal = float(sum(line["price"] * line["quantity"] for line in lines))
        discount = round(subtotal * (0.1 if coupon == "WELCOME10" else 0.15), 2) if coupon else 0.0
        shipping = 0.0 if subtotal - discount >= FREE_SHIPPING_FROM else SHIPPING
        props: dict[str, Any] = {
            "subtotal": subtotal,
            "discount": discount,
            "shipping": shipping,
            "revenue": round(subtotal - discount, 2),
            "total": round(subtotal - discount + shipping, 2),
            "currency": CURRENCY,
            "products": lines,
        }
        if coupon:
            props["coupon"] = coupon
        return props

    def _checkout(self, person: Person, who: dict[str, Any], category: str, moment: float) -> float:
        rng = self.rng
        cart = person.cart
        if cart and rng.random() < 0.5:
            for pid, qty in cart:
                self.track(moment, who, "Product Removed", {**self._line(self.products[pid], qty)})
                moment = self._next(moment)
            cart.clear()
        self._add(who, cart, self._product(category, moment, person.spend_level), moment)
        if rng.random() < 0.4:
            extra = CATEGORY_BY_ID[category].compatible
            other = extra[int(rng.integers(len(extra)))]
            moment = self._next(moment)
            self._add(who, cart, self._product(other, moment, person.spend_level), moment)
        moment = self._next(moment)
        self.track(moment, who, "Cart Viewed", {"products": self._lines(cart)})
        moment = self._next(moment)
        first = person.orders == 0
        coupon = (
            "WELCOME10"
            if first and rng.random() < 0.5
            else "SALE15"
            if rng.random() < 0.08
            else None
        )
        self.track(moment, who, "Checkout Started", self._order_props(cart, coupon))
        moment = self._next(moment)
        props = {"order_id": self._order_id("W"), **self._order_props(cart, coupon)}
        self.track(moment, who, "Order Completed", props)
        person.orders += 1
        person.last_order = moment
        cart.clear()
        self._aftermath(who, props, moment)
        return moment

    def _order_id(self, prefix: str) -> str:
        self._order_seq += 1
        return f"{prefix}{self.seed}{self.tag}-{self._order_seq:07d}"

    def _aftermath(self, who: dict[str, Any], order: dict[str, Any], moment: float) -> None:
        """Some orders are cancelled within hours, some refunded (whole or one line) later."""
        rng = self.rng
        who = {k: v for k, v in who.items() if k == "userId"} or who
        draw = rng.random()
        if draw < 0.03:
            self.track(
                moment + float(rng.uniform(0.5, 20)) * 3600,
                who,
                "Order Cancelled",
                {"order_id": order["order_id"], "reason": "changed mind", "currency": CURRENCY},
            )
        elif draw < 0.10:
            lines = order["products"]
            later = moment + float(rng.uniform(3, 14)) * DAY
            props: dict[str, Any] = {"order_id": order["order_id"], "currency": CURRENCY}
            if len(lines) > 1 and rng.random() < 0.6:
                line = lines[int(rng.integers(len(lines)))]
                props["products"] = [line]
                props["total"] = float(line["price"] * line["quantity"])
            else:
                props["products"] = lines
            self.track(later, who, "Order Refunded", props)

    # -- back office and offline ---------------------------------------------------------

    def sync(self, person: Person, moment: float) -> None:
        """A customer the shop already had: the back office sends their card by user id."""
        traits = self._identify_traits(person, moment)
        del traits["createdAt"]
        self._send(moment, {"type": "identify", "userId": person.user_id, "traits": traits})

    def store_purchase(self, person: Person, moment: float) -> None:
        """A purchase at a till: identified by the loyalty card, no web session."""
        rng = self.rng
        who = {"userId": person.user_id}
        if not person.registered:
            person.registered = True
            self.stats.signups += 1
            traits = self._identify_traits(person, moment)
            self._send(moment, {"type": "identify", **who, "traits": traits})
            moment += 60.0
        stores = person.city.store_ids
        store = stores[int(rng.integers(len(stores)))]
        cart: list[tuple[str, int]] = []
        for _ in range(1 + int(rng.poisson(0.5))):
            product = self._product(
                self._category(person.category_weights, moment), moment, person.spend_level
            )
            cart.append((product.id, 1))
        props = {
            "order_id": self._order_id("S"),
            "store_id": store,
            "channel": "offline",
            **self._order_props(cart, None),
        }
        props["shipping"] = 0.0
        props["total"] = props["revenue"]
        self.track(moment, who, "Order Completed", props)
        person.orders += 1
        person.last_order = moment

    def call(self, person: Person | None, moment: float) -> None:
        """A call to the contact centre: telephony knows only the caller's number."""
        rng = self.rng
        if person is not None and person.phone is not None:
            phone = display_phone(person.phone, rng)
            self.stats.calls_known += 1
        else:
            phone = f"+7 (495) {int(rng.integers(100, 1000))}-{int(rng.integers(10, 100))}-{int(rng.integers(10, 100))}"
            self.stats.calls_unknown += 1
        self._send(
            moment,
            {
                "type": "track",
                "anonymousId": f"call-{self._uuid()}",
                "event": "Call Completed",
                "properties": {
                    "direction": "inbound",
                    "duration": int(rng.gamma(2.0, 90.0)) + 10,
                    "topic": CALL_TOPICS[int(rng.integers(len(CALL_TOPICS)))],
                    "line": "contact-centre",
                },
                "context": {"traits": {"phone": phone}},
            },
        )

"""The demo shop's customers: who they are and how much they buy.

Heterogeneity follows the models analytics will later fit: each customer buys at their own
Poisson rate (drawn from a gamma distribution), may drop out after any purchase (with a
probability drawn from a beta distribution), and spends around their own mean (gamma
again). That is the BG/NBD and Gamma-Gamma story, so fitted CLV has something true to find.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from rapport.demo.catalog import CATEGORIES


@dataclass(frozen=True)
class City:
    name: str
    country: str
    timezone: str
    # A fixed offset is enough to put sessions in the customer's daytime.
    utc_offset_hours: int
    weight: float
    store_ids: tuple[str, ...] = ()
    phone_prefix: str = "+79"
    # Digits after the prefix in a mobile number of that country.
    phone_digits: int = 9


CITIES: tuple[City, ...] = (
    City("Москва", "RU", "Europe/Moscow", 3, 30, ("msk-tverskaya", "msk-aviapark")),
    City("Санкт-Петербург", "RU", "Europe/Moscow", 3, 14, ("spb-nevsky",)),
    City("Казань", "RU", "Europe/Moscow", 3, 5),
    City("Нижний Новгород", "RU", "Europe/Moscow", 3, 4),
    City("Краснодар", "RU", "Europe/Moscow", 3, 4),
    City("Самара", "RU", "Europe/Samara", 4, 3),
    City("Екатеринбург", "RU", "Asia/Yekaterinburg", 5, 5),
    City("Новосибирск", "RU", "Asia/Novosibirsk", 7, 4),
    City("Владивосток", "RU", "Asia/Vladivostok", 10, 2),
    City("London", "GB", "Europe/London", 0, 3, (), "+447"),
    City("Berlin", "DE", "Europe/Berlin", 1, 2, (), "+4915"),
    City("Riga", "LV", "Europe/Riga", 2, 2, (), "+3712", 7),
)

_RU_MALE = (
    "Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Иван", "Михаил",
    "Никита", "Егор", "Павел", "Артём",
)  # fmt: skip
_RU_FEMALE = (
    "Анна", "Мария", "Елена", "Ольга", "Наталья", "Екатерина", "Дарья", "Ксения",
    "Полина", "Виктория", "Алина", "Софья",
)  # fmt: skip
# (masculine, feminine) surnames.
_RU_LAST = (
    ("Иванов", "Иванова"), ("Смирнов", "Смирнова"), ("Кузнецов", "Кузнецова"),
    ("Попов", "Попова"), ("Соколов", "Соколова"), ("Лебедев", "Лебедева"),
    ("Новиков", "Новикова"), ("Морозов", "Морозова"), ("Волков", "Волкова"),
    ("Зайцев", "Зайцева"), ("Орлов", "Орлова"), ("Белов", "Белова"),
)  # fmt: skip
_EN_MALE = ("James", "Oliver", "Thomas", "Daniel", "Lucas", "Jonas", "Mark", "Peter")
_EN_FEMALE = ("Emma", "Olivia", "Sophie", "Laura", "Anna", "Hannah", "Julia", "Eva")
_EN_LAST = ("Smith", "Brown", "Taylor", "Wilson", "Müller", "Schmidt", "Berzins", "Clark")

_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
        "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
        "ч": "ch", "ш": "sh", "щ": "sch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
        "я": "ya", "ü": "u",
    }
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
ACQUISITION = ("organic", "search_ads", "social", "referral", "email_newsletter", "offline_store")


@dataclass
class Person:
    """One customer: fixed traits, buying parameters, and what the site knows so far."""

    index: int
    user_id: str
    first_name: str
    last_name: str
    gender: str
    email: str
    phone: str | None
    birthday: date
    city: City
    locale: str
    consents: dict[str, bool]
    acquisition: str
    # Seconds since the epoch when this person first comes to the shop.
    arrives: float
    # Already a customer before the history starts (known on the first visit).
    known_before: bool
    # Leaves an email in a newsletter form before registering.
    newsletter_first: bool
    orders_per_month: float
    dropout: float
    spend_level: float
    category_weights: np.ndarray
    # What the site knows, updated as sessions happen.
    registered: bool = False
    devices: list[str] = field(default_factory=list)
    logged_in: set[str] = field(default_factory=set)
    cart: list[tuple[str, int]] = field(default_factory=list)
    signup_visit: int = 0
    orders: int = 0
    # Seconds since the epoch of the last order and the last visit (0: none yet); the
    # response model reads them (is a win-back for someone lapsing?).
    last_order: float = 0.0
    last_visit: float = 0.0


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def build_population(
    rng: np.random.Generator, count: int, start: float, end: float
) -> list[Person]:
    """``count`` customers; about a third were customers before the history starts."""
    weights = np.array([c.weight for c in CITIES], dtype=float)
    weights /= weights.sum()
    # Unique phone numbers: distinct draws, so no two customers share one.
    phone_tails = rng.choice(10**7, size=count, replace=False)
    people: list[Person] = []
    for i in range(count):
        city = CITIES[int(rng.choice(len(CITIES), p=weights))]
        russian = city.country == "RU"
        locale = ("ru-RU" if rng.random() < 0.93 else "en-US") if russian else "en-GB"
        gender = "female" if rng.random() < 0.58 else "male"
        if russian:
            first = _pick(rng, _RU_FEMALE if gender == "female" else _RU_MALE)
            pair = _RU_LAST[int(rng.integers(len(_RU_LAST)))]
            last = pair[1] if gender == "female" else pair[0]
        else:
            first = _pick(rng, _EN_FEMALE if gender == "female" else _EN_MALE)
            last = _pick(rng, _EN_LAST)
        login = f"{first.lower().translate(_TRANSLIT)}.{last.lower().translate(_TRANSLIT)}"
        email = f"{login}{i + 1}@{_pick(rng, EMAIL_DOMAINS)}"
        phone = None
        if rng.random() < 0.75:
            phone = city.phone_prefix + f"{int(phone_tails[i]):0{city.phone_digits}d}"
        age = float(np.clip(rng.gamma(4.0, 4.0) + 18, 18, 75))
        born = date(1970, 1, 1) + timedelta(days=int(end // 86400 - age * 365.25))
        known_before = rng.random() < 0.35
        arrives = start if known_before else float(rng.uniform(start, end - 3600))
        # A few favourite categories carry most of a person's attention.
        affinity = rng.dirichlet(np.full(len(CATEGORIES), 0.35))
        people.append(
            Person(
                index=i,
                user_id=f"u{i + 1:06d}",
                first_name=first,
                last_name=last,
                gender=gender,
                email=email,
                phone=phone,
                birthday=born,
                city=city,
                locale=locale,
                consents={
                    "email": bool(rng.random() < 0.72),
                    "sms": bool(phone is not None and rng.random() < 0.45),
                    "push": bool(rng.random() < 0.3),
                },
                acquisition="organic" if known_before else _pick(rng, ACQUISITION),
                arrives=arrives,
                known_before=known_before,
                newsletter_first=(not known_before) and rng.random() < 0.2,
                orders_per_month=float(rng.gamma(0.9, 0.5)),
                dropout=float(rng.beta(1.5, 5.0)),
                spend_level=float(rng.gamma(4.0, 0.25)),
                category_weights=affinity,
                registered=known_before,
            )
        )
    return people

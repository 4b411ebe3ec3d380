"""The bank's simulated days: the shop's simulation with the bank's loader and answers.

The day loop, the worker's jobs, the mail catcher and the response model are the shop's
(``simulate.py``, ``reactions.py``, ``response.py``). Two things differ. The bank's
messages are stored by ``BankLoader`` (which also registers the app's push tokens). And
what a click on a bank e-mail leads to: on the credit or savings offer, an application
for a product of that category (decided by the score, opened days later); on any other
e-mail (the card's welcome, a campaign), a purchase with the card, which arrives as
``Transaction Made`` and ``Order Completed`` and is attributed like a shop's order.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rapport.demo.bank_catalog import BANK_NAME, BANK_URL
from rapport.demo.generator import GenerationResult, History
from rapport.demo.inbox import Caught
from rapport.demo.reactions import Responder
from rapport.demo.response import Delivered
from rapport.demo.simulate import Simulation, SimulationConfig
from rapport.demo.stage import Staged
from rapport.demo.strategy import Strategy
from rapport.scenarios.library import SETTING
from rapport.scenarios.library_files import Brand, load_library
from rapport.segments.config import read_setting, write_setting
from rapport.settings import Settings
from rapport.store.engine import writing

# The template of an e-mail whose click leads to an application, and for what.
APPLICATION_FOR = {
    "playbook-bank-offer-credit": "credit-cards",
    "playbook-bank-offer-savings": "savings",
}
BANK_PLAYBOOKS = tuple(sorted(p.key for p in load_library() if p.pack == "bank"))

# What `rapport demo run --vertical bank` uses without --strategy: the bank playbooks,
# caps per channel, a 10 % global control group, no campaigns.
BANK_DEFAULT = Strategy.model_validate(
    {
        "name": "bank playbook library",
        "scenarios": list(BANK_PLAYBOOKS),
        "policy": {
            "channels": {
                "email": {"cap": {"max_messages": 3, "days": 7}},
                "push": {"cap": {"max_messages": 4, "days": 7}},
                "sms": {"cap": {"max_messages": 3, "days": 7}},
            }
        },
    }
)


def name_the_bank(engine: sa.Engine, now: datetime) -> None:
    """The library's messages speak for the demo bank (its name and site), not for the
    library's placeholder shop: the brand the installer remembers, set before it runs."""
    with writing(engine) as conn:
        state = dict(read_setting(conn, SETTING) or {})
        state["brand"] = Brand(site_url=BANK_URL, name=BANK_NAME).as_json()
        state.setdefault("installed", {})
        write_setting(conn, SETTING, state, now)


class BankResponder(Responder):
    """The shop's responder; a bank e-mail "shows" the category its click applies for."""

    def _delivered(self, row: Any, found: Caught, moment: float) -> Delivered:
        message = super()._delivered(row, found, moment)
        category = APPLICATION_FOR.get(message.template or "")
        return replace(message, categories=(category,) if category else ())


class BankSimulation(Simulation):
    def __init__(
        self,
        engine: sa.Engine,
        history: History,
        staged: Staged,
        maildir: Path,
        *,
        config: SimulationConfig | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(engine, history, staged, maildir, config=config, settings=settings)
        demo = history.config
        bank = GenerationResult(demo, self.start, self.end)
        self.loader = history.loader(engine, bank, settings or Settings(), pipeline=self.pipeline)
        self.responder = BankResponder(
            self.pipeline, history, staged, maildir, self.config.response, demo.seed
        )

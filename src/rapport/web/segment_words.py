"""A saved rule in plain words, for the segment page ("City is Kazan", "Performed …").

The sentences are built by ``rapport.segments.describe`` (the CRM-strategy document says
the same rules in the same words); this module keeps the page's import working and marks
the sentences for the UI's catalog. The labels they use (fields, operators, outcomes) are
marked in ``segment_catalog``; tests/test_strategy_words.py checks that both lists cover
``segments.describe.WORDS``.
"""

from __future__ import annotations

from rapport.segments.describe import Gettext, Sentence, describe
from rapport.web.i18n import N_

__all__ = ["SENTENCE_WORDS", "Gettext", "Sentence", "describe"]

# segments.describe.SENTENCES, marked for the catalog.
SENTENCE_WORDS = (
    N_("Trait %(name)s"),
    N_("Has not performed %(event)s for %(days)s days"),
    N_("Last performed %(event)s: %(how)s %(when)s"),
    N_("Performed %(event)s %(mode)s %(n)s times"),
    N_("in the last %(days)s days"),
    N_("where %(filters)s"),
    N_("A message was %(outcome)s"),
    N_("Consent to %(channel)s: %(status)s"),
    N_("Member of %(name)s (#%(id)s)"),
    N_("RFM cell is one of %(cells)s"),
    N_("Lifecycle stage is one of %(stages)s"),
    N_("Random bucket %(low)s–%(high)s of 100 (salt %(salt)s)"),
)

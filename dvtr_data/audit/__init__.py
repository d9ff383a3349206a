"""`audit`: text leakage, id and caption checks on any dataset, as JSON (``audit.json``) and as tables."""

from __future__ import annotations

from dvtr_data.audit.card import card_audit
from dvtr_data.audit.core import AUDIT_NAME, audit_dataset, read_audit
from dvtr_data.audit.render import render

__all__ = ["AUDIT_NAME", "audit_dataset", "card_audit", "read_audit", "render"]

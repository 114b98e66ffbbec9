"""Entropy coding: quantised probability tables (``tables``) and the ANS coder over
constriction (``ans``). It knows integers and distributions, not pixels or networks."""

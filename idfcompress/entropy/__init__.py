"""Entropy coding: quantised probability tables (``tables``) and the ANS coder
(``ans``, over ``rans``, a compiled stack coder that writes constriction's streams). It
knows integers and distributions, not pixels or networks."""

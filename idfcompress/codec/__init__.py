"""The one encoder (``encoder``), the one decoder (``decoder``) and progressive decoding
built on the decoder's stage-by-stage interface (``progressive``)."""

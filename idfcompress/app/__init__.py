"""What users run: the ``idfc`` command line (``cli``), atomic output files (``files``) and
the progressive viewer (``viewer``). It parses, reads and writes; the API does the work."""

"""The .idf bytes: the container (header, plane groups, chunk table) and the tile layout
(tile grid, chunk kinds) that encoder and decoder share. No torch, no pixel work."""

"""The region coder: pixel regions as LZMA2 or predictive payloads (``regions``); the
predictive coder itself (``coder``) blends eight predictors by their recent errors and codes
the residuals with fitted logistics per error context. numpy only."""

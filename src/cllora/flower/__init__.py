"""cllora on Flower: the ServerApp side that drives cllora's own round loop over Flower messages
(`server`), the ClientApp (`client`), the local federation for `flwr run` (`local`) and per-round
timing (`timing`). Importing this package imports nothing from flwr; its modules do."""

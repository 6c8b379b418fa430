"""The in-process federated loop: data preparation and the experiment (`experiment`), the round
loop with checkpoints and resume (`loop`), evaluation (`evaluation`), the DP round
(`private_round`), model runtime (`runtime`), progress display and trackers (`progress`,
`tracking`). It draws nothing and knows nothing of Flower: `cllora.runner` picks an engine."""

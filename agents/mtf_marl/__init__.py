"""The MTF-MARL system: an H4 director and an M1 executor with one joint TD3 critic (``learner``), its replay buffer
(``buffer``), when each agent decides (``cadence``) and its checkpoint loader (``checkpoint``)."""

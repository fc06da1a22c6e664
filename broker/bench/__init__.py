"""``respublica bench``: the policy pipeline measured side by side with baselines.

Start reading at ``broker/bench/harness.py`` (preload, rounds, ratios); the variants are in
``broker/bench/variants.py`` (B1 passthrough, B2 serde, P the real worker) and
``broker/bench/faust_plain.py`` (F, the plain faust version a user would write).
"""

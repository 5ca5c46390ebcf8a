"""Reporting: the trial table and everything built on it, with pandas and matplotlib only (never Ray).

    trials.py  THE trial-row builder and its three sources (live ResultGrid, Ray's folders, trials CSVs)
    order.py   display order and labels, from the task and loss registries
    rank.py    best setting per task x student x loss, differences to the baselines
    paper.py   the paper-style table (Table 2 layout)
    plots.py   figures
    build.py   inputs -> Report (trials, leaderboard, paper table); the files a sweep writes
    cli.py     `makd leaderboard`
"""

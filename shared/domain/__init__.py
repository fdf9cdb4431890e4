"""The pure core: policy tag, schedule, tiers, retention plan, names and records.

Standard library plus a cron parser; no Azure SDK, no clock reads (time is passed in).
"""

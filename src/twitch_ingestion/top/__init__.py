"""`twitch-ingestion top`: a live terminal view of one instance or of the whole fleet.

`model.py` turns `/metrics` scrapes into the figures on screen (pure), `screen.py` draws
them with rich (pure), `app.py` is the shell: scraping, the fleet's reports, the keys.
"""

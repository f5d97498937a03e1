"""Twitch's anonymous gifter, as both sources name it.

A gift from a user who chose to stay anonymous names a stand-in account: IRC puts its
login on the USERNOTICE; EventSub says `chatter_is_anonymous` instead, and the EventSub
source fills in the same account so that consumers see one gifter whichever source read.
"""

from __future__ import annotations

__all__ = [
    "ANONYMOUS_GIFTER_DISPLAY_NAME",
    "ANONYMOUS_GIFTER_LOGIN",
    "ANONYMOUS_GIFTER_USER_ID",
]

ANONYMOUS_GIFTER_LOGIN = "ananonymousgifter"
"""The login Twitch puts on gifts from a user who chose to stay anonymous."""
ANONYMOUS_GIFTER_USER_ID = "274598607"
"""`user-id` of Twitch's `ananonymousgifter` account, which IRC names as the gifter."""
ANONYMOUS_GIFTER_DISPLAY_NAME = "AnAnonymousGifter"

"""HTML pages of the OpenMarlin simulator: the sign-in (WorkOS) page and the Stripe checkout.

A person trying `make demo` opens these in a browser and clicks; a test POSTs the same form
(`decision=approve|deny` or `decision=pay|fail`) to the URL the bot received.
"""

from __future__ import annotations

from html import escape

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
    "button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem;border-radius:.4rem}"
    ".ok{background:#1a7f37;color:#fff;border:0}.no{background:#fff;border:1px solid #999}"
    "code{background:#eee;padding:.1rem .3rem}"
)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}"
        "<p><small>OpenMarlin simulator — nothing here is real.</small></p></body></html>"
    )


def sign_in_page(user_code: str, expires_in_s: int, email: str) -> str:
    """Approve / Deny for a pending registration."""
    return _page(
        "Sign in to OpenMarlin",
        f"<p>tokenbot asks to create an OpenMarlin workspace key for you. Check that the "
        f"code matches: <code>{escape(user_code)}</code>.</p>"
        f"<p>This request expires in about {max(expires_in_s, 0)} s.</p>"
        "<form method='post'>"
        f"<p><label>Email <input name='email' value='{escape(email)}'></label></p>"
        "<button class='ok' name='decision' value='approve'>Approve</button>"
        "<button class='no' name='decision' value='deny'>Deny</button>"
        "</form>",
    )


def decided_page(decision: str) -> str:
    """What the person sees after clicking."""
    if decision == "approve":
        return _page(
            "Signed in",
            "<p>Done. You can close this tab and go back to your chat: tokenbot will "
            "finish setting up your key.</p>",
        )
    return _page("Access denied", "<p>Nothing was created. You can close this tab.</p>")


def closed_page(state: str) -> str:
    """A sign-in link that can no longer be used."""
    return _page(
        "This sign-in link is no longer valid",
        f"<p>The registration is <code>{escape(state)}</code>. Start again from your chat.</p>",
    )


def checkout_page(amount: str, unit: str, reference: str, status: str) -> str:
    """Pay / fail for a pending top-up (a stand-in for Stripe Checkout)."""
    if status != "pending_payment":
        return _page("Checkout", f"<p>This checkout is <code>{escape(status)}</code>.</p>")
    return _page(
        "Checkout",
        f"<p>Add <b>{escape(amount)} {escape(unit)}</b> to your OpenMarlin workspace.</p>"
        f"<p>Reference <code>{escape(reference)}</code>.</p>"
        "<form method='post'>"
        "<button class='ok' name='decision' value='pay'>Pay</button>"
        "<button class='no' name='decision' value='fail'>Decline card</button>"
        "</form>",
    )


def paid_page(status: str) -> str:
    """After the checkout decision."""
    if status == "credit_applied":
        return _page("Payment received", "<p>Credit applied. You can go back to your chat.</p>")
    return _page("Payment failed", "<p>The card was declined. You can go back to your chat.</p>")


def callback_landing_page() -> str:
    """The browser flow's redirect target: user-facing only, the session is the truth."""
    return _page("You're signed in", "<p>You can close this tab and return to your chat.</p>")

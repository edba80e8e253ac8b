"""The reader study's web app (Flask, already installed with MLflow): one image at a time, blinded.

A reader opens their link (/r/<token>), sees the first image they have not answered, and
answers: real or synthetic, confidence 1-5, the condition, an optional note. Each answer is
stored at once (review/store.py), so a reload or a closed tab resumes at the right image. No
page or URL names the image's file, kind or label; images are re-encoded (review/blinding.py).
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, abort, redirect, render_template_string, request
from markupsafe import escape

from dermsynth.review import store
from dermsynth.review.blinding import blinded_jpeg

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dermsynth reader study</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 1.5rem auto; color: #1d2733; }
 img { width: 100%; max-width: 32rem; image-rendering: auto; border: 1px solid #ccd; display: block; }
 fieldset { border: 1px solid #ccd; margin: .8rem 0; } label { margin-right: 1rem; }
 button { font-size: 1.05rem; padding: .4rem 1.4rem; } .muted { color: #667; }
</style></head><body>
<h1>Reader study</h1>
{% if position is none %}
<p id="done">Thank you, {{ name }}: all {{ total }} images are answered. You may close this page.</p>
{% else %}
<p class="muted">Reader {{ name }} &middot; image <span id="progress">{{ position + 1 }} / {{ total }}</span></p>
<img id="image" src="/r/{{ token }}/image/{{ position }}" alt="image {{ position + 1 }}">
<form method="post" action="/r/{{ token }}/answer/{{ position }}">
 <fieldset><legend>Is this a real photograph or a synthetic image?</legend>
  <label><input type="radio" id="real" name="judged" value="real" required> real</label>
  <label><input type="radio" id="synthetic" name="judged" value="synthetic"> synthetic</label></fieldset>
 <fieldset><legend>How confident are you? (1 = guessing, 5 = certain)</legend>
  {% for c in range(1, 6) %}<label><input type="radio" id="conf{{ c }}" name="confidence" value="{{ c }}"
   required> {{ c }}</label>{% endfor %}</fieldset>
 <fieldset><legend>Which condition is it?</legend>
  <select id="condition" name="condition" required><option value="">choose...</option>
  {% for c in conditions %}<option value="{{ c }}">{{ c }}</option>{% endfor %}</select></fieldset>
 <fieldset><legend>Note (optional)</legend><textarea id="note" name="note" rows="2" cols="60"></textarea></fieldset>
 <button id="submit" type="submit">Save and next</button>
</form>
{% endif %}
</body></html>"""

INDEX = "<!doctype html><title>dermsynth reader study</title><p>Open the personal link you were given.</p>"


def create_app(db: Path, conditions: list[str], size: int, quality: int) -> Flask:
    """The app over one study's store; images are blinded at ``size`` px, JPEG ``quality``."""
    app = Flask("dermsynth.review")

    @app.errorhandler(store.ReviewError)
    def refused(err: store.ReviewError) -> tuple[str, int]:
        return f"<!doctype html><title>reader study</title><p>{escape(str(err))}</p>", 404

    @app.get("/")
    def index() -> str:
        return INDEX

    @app.get("/r/<token>")
    def page(token: str) -> str:
        name, position, total = store.next_position(db, token)
        return render_template_string(
            PAGE, name=name, position=position, total=total, token=token, conditions=conditions
        )

    @app.get("/r/<token>/image/<int:position>")
    def image(token: str, position: int) -> Response:
        item = store.item_at(db, token, position)
        response = Response(blinded_jpeg(Path(item["path"]), size, quality), mimetype="image/jpeg")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/r/<token>/answer/<int:position>")
    def save(token: str, position: int) -> Response:
        form = request.form
        if form.get("judged") not in ("real", "synthetic") or form.get("condition") not in conditions:
            abort(400, "answer real or synthetic, and one of the study's conditions")
        try:
            confidence = int(form.get("confidence", ""))
        except ValueError:
            abort(400, "confidence must be 1-5")
        store.answer(db, token, position, form["judged"] == "real", confidence, form["condition"], form.get("note", ""))
        return redirect(f"/r/{token}", code=303)

    return app

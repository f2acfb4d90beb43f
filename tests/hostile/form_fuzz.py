"""The form fuzzer's parts: read the forms and links a page renders, derive junk for each field, send it, judge
the answer.

What the fuzzer holds every HTML form to (``tests/hostile/test_form_fuzz.py`` drives it):

- no answer is a 5xx;
- a *refusal* is any answer that is a 4xx, re-renders the form with errors, or queues an error message;
- a refusal of a junk value is a **4xx that names the field**: the re-rendered form marks that field
  (``aria-invalid="true"`` on the input, or Django's ``id_<name>_error`` list), or the refusal page names it
  (``data-field="<name>"``, see ``ops_platform/core/templates/core/refused.html``), or a JSON/plain answer
  carries the name; a redirect with an error message is a refusal that hides its status and fails;
- a refusal stores nothing: every table the request wrote to reads the same as before it (sessions and the
  sign-in throttle's own tables aside).

A form whose unchanged values are themselves refused (a button the persona may see but not use, a step the
state does not allow) cannot say anything about one field; its junk is only held to "no 5xx, nothing stored".
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

from django.contrib import messages
from django.contrib.messages.storage.base import BaseStorage
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import Resolver404, resolve

# Junk every field gets. Unicode digits pass str.isdigit() yet int() takes only some of them ('²' fails);
# 30 digits overflow every integer column; the long text is over any limit a form or a column has.
JUNK: dict[str, str] = {
    "unicode digit '²'": "²",
    "Arabic-Indic '١٢'": "١٢",
    "30 digits": "9" * 30,
    "negative": "-7",
    "empty": "",
    "letters": "abc",
    "100,000 characters": "x" * 100_000,
}
ID_VALUE = re.compile(r"^[1-9][0-9]{0,18}$")
# Written by sign-in and session machinery, not by the view's decision.
UNWATCHED_TABLES = {"django_session"}
UNWATCHED_PREFIXES = ("axes_",)
WRITE = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?([A-Za-z0-9_]+)"?', re.IGNORECASE)


def _view_name(path: str) -> str:
    try:
        return resolve(path).url_name or path
    except Resolver404:
        return path


@dataclass
class Form:
    """One form as a browser would send it: where, how, and the values it shows."""

    method: str  # "get" or "post"
    action: str  # path and query, as the browser resolves the form's action
    values: list[tuple[str, str]]  # what submitting it unchanged sends (a name may repeat)
    names: list[str] = field(default_factory=list)  # every field, sent unchanged or not (unchecked boxes)
    options: dict[str, list[str]] = field(default_factory=dict)  # the values a select, radio or checkbox offers

    @property
    def path(self) -> str:
        return urlsplit(self.action).path

    def looks_like_id(self, name: str) -> bool:
        """A field whose shown or offered values are ids: the place for ids of objects the user may not see."""
        shown = [v for n, v in self.values if n == name] + self.options.get(name, [])
        return any(ID_VALUE.match(v) for v in shown)

    def with_value(self, name: str, value: str) -> list[tuple[str, str]]:
        """The form's values with every value of ``name`` replaced by one ``value``."""
        rest = [(n, v) for n, v in self.values if n != name]
        return [*rest, (name, value)]

    def signature(self) -> tuple[str, str, tuple[str, ...]]:
        """The same form of the same view: another object's page (another panel, another item) sends the
        same fields to the same code, so one of them is enough."""
        return self.method, _view_name(self.path), tuple(sorted(set(self.names)))


@dataclass
class Link:
    """A link to one of our pages with a query string: its parameters are GET input like a filter form's."""

    path: str
    params: list[tuple[str, str]]

    def signature(self) -> tuple[str, tuple[str, ...]]:
        return _view_name(self.path), tuple(sorted({n for n, _ in self.params}))


class _PageReader(HTMLParser):
    def __init__(self, page_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page_url = page_url
        self.forms: list[Form] = []
        self.links: list[Link] = []
        self.paths: set[str] = set()  # every page of ours the page links to
        self._form: Form | None = None
        self._extra_posts: list[tuple[str, dict[str, str]]] = []  # htmx elements posting the enclosing form
        self._submit: tuple[str, str] | None = None  # the first named submit button: what Enter sends
        self._unnamed_submit = False
        self._radios: dict[str, str] = {}  # a radio group sends its checked choice, else its first
        self._select: tuple[str, bool] | None = None
        self._select_values: list[str] = []
        self._select_chosen: list[str] = []
        self._textarea: str | None = None
        self._text: list[str] = []

    def _resolve(self, target: str | None) -> str:
        return urljoin(self.page_url, target or self.page_url)

    def handle_starttag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attr_list}
        if tag == "a" and attrs.get("href"):
            url = urlsplit(self._resolve(attrs["href"]))
            if not url.netloc and url.path.startswith("/"):
                self.paths.add(url.path)
                if url.query:
                    self.links.append(Link(url.path, parse_qsl(url.query, keep_blank_values=True)))
        if tag == "form":
            if "hx-post" in attrs:
                method, action = "post", attrs["hx-post"]
            elif "hx-get" in attrs:
                method, action = "get", attrs["hx-get"]
            else:
                method, action = (attrs.get("method") or "get").lower(), attrs.get("action", "")
            self._form = Form(method=method, action=self._resolve(action), values=[])
            self._extra_posts, self._submit, self._radios, self._unnamed_submit = [], None, {}, False
            return
        form = self._form
        if form is None:
            return
        if "hx-post" in attrs and tag != "form":
            vals = json.loads(attrs.get("hx-vals") or "{}")
            self._extra_posts.append((self._resolve(attrs["hx-post"]), {str(k): str(v) for k, v in vals.items()}))
        name = attrs.get("name", "")
        if tag == "input":
            kind = attrs.get("type", "text").lower()
            if kind in ("submit", "image", "button", "reset"):
                if kind == "submit" and not name:
                    self._unnamed_submit = True
                if name and kind == "submit" and self._submit is None:
                    self._submit = (name, attrs.get("value", ""))
                if name:
                    form.names.append(name)
                    form.options.setdefault(name, []).append(attrs.get("value", ""))
                return
            if not name or kind == "file":
                return
            form.names.append(name)
            value = attrs.get("value", "on")
            if kind == "radio":
                form.options.setdefault(name, []).append(value)
                if "checked" in attrs or name not in self._radios:
                    self._radios[name] = value
            elif kind == "checkbox":
                form.options.setdefault(name, []).append(value)
                if "checked" in attrs:
                    form.values.append((name, value))
            else:
                form.values.append((name, attrs.get("value", "")))
        elif tag == "button":
            if attrs.get("type", "submit").lower() != "submit":
                return
            if not name:
                self._unnamed_submit = True
                return
            form.names.append(name)
            form.options.setdefault(name, []).append(attrs.get("value", ""))
            if self._submit is None:
                self._submit = (name, attrs.get("value", ""))
        elif tag == "select" and name:
            self._select = (name, "multiple" in attrs)
            self._select_values, self._select_chosen = [], []
            form.names.append(name)
        elif tag == "option" and self._select is not None:
            value = attrs.get("value")
            self._select_values.append(value if value is not None else "")
            if "selected" in attrs:
                self._select_chosen.append(self._select_values[-1])
            if value is None:
                self._text = []
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []
            form.names.append(name)

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        form = self._form
        if form is None:
            return
        if tag == "select" and self._select is not None:
            name, multiple = self._select
            form.options[name] = [v for v in self._select_values if v]
            chosen = self._select_chosen or ([] if multiple else self._select_values[:1])
            form.values += [(name, v) for v in chosen]
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            # The HTML parser keeps the newline right after <textarea>; a browser drops it.
            form.values.append((self._textarea, "".join(self._text).removeprefix("\n")))
            self._textarea = None
        elif tag == "form":
            form.values += list(self._radios.items())
            if self._submit is not None:
                # A form with named buttons and a plain one sends two shapes (the decide form: a one-key
                # button, or the full form): both are read.
                if self._unnamed_submit:
                    names = [n for n in form.names if n != self._submit[0]]
                    self.forms.append(Form(form.method, form.action, list(form.values), names, dict(form.options)))
                form.values.append(self._submit)
            self.forms.append(form)
            for action, vals in self._extra_posts:
                values = [(n, v) for n, v in form.values if n not in vals] + list(vals.items())
                self.forms.append(Form("post", action, values, [*form.names, *vals], dict(form.options)))
            self._form = None


@dataclass
class Page:
    forms: list[Form]
    links: list[Link]  # links with a query string
    paths: set[str]  # every path linked to


def page_read(html: str, page_url: str) -> Page:
    reader = _PageReader(page_url)
    reader.feed(html)
    reader.close()
    return Page(reader.forms, reader.links, reader.paths)


def junk_for(form: Form, name: str, foreign_ids: dict[str, int]) -> Iterator[tuple[str, str]]:
    """(what, value) pairs to try in one field: the junk every field gets, and for id fields, ids of objects
    this user may not see."""
    yield from JUNK.items()
    if form.looks_like_id(name):
        for what, pk in foreign_ids.items():
            yield f"id of {what}", str(pk)


# --- sending and judging ---------------------------------------------------------------------------------


@dataclass
class Answer:
    response: HttpResponse
    errors: list[str]  # error messages the view queued (messages.error)
    written: dict[str, bool]  # table -> whether its rows differ from before the request

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def stored(self) -> list[str]:
        return sorted(t for t, changed in self.written.items() if changed)

    def text(self) -> str:
        return self.response.content.decode(errors="replace") if not self.response.streaming else ""

    def exception(self) -> str:
        exc_info = getattr(self.response, "exc_info", None)
        if not exc_info:
            return ""
        return f"{exc_info[0].__name__}: {str(exc_info[1])[:160]}"

    def form_errors(self) -> bool:
        body = self.text()
        return 'class="errorlist' in body or 'aria-invalid="true"' in body

    def is_refusal(self) -> bool:
        return 400 <= self.status < 500 or bool(self.errors) or self.form_errors()

    def names(self, name: str) -> bool:
        """Whether the answer says which field it refuses."""
        body = self.text()
        content_type = self.response.get("Content-Type", "")
        if content_type.startswith("application/json"):
            try:
                data = json.loads(body)
            except ValueError:
                return False
            fields = [data.get("field")] + [e.get("field") for e in data.get("errors", []) if isinstance(e, dict)]
            return name in fields
        if not content_type.startswith("text/html"):
            return name in body
        return _FieldMarks.find(body, name)


class _FieldMarks(HTMLParser):
    def __init__(self, name: str) -> None:
        super().__init__(convert_charrefs=True)
        self.name = name
        self.found = False

    @classmethod
    def find(cls, html: str, name: str) -> bool:
        reader = cls(name)
        reader.feed(html)
        return reader.found

    def handle_starttag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attr_list}
        if attrs.get("name") == self.name and attrs.get("aria-invalid") == "true":
            self.found = True
        if attrs.get("id") == f"id_{self.name}_error" or attrs.get("data-field") == self.name:
            self.found = True


def _table_rows(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
        return sorted(repr(row) for row in cursor.fetchall())


@contextmanager
def _watching() -> Iterator[tuple[set[str], list[str]]]:
    """Tables the request writes to, and the error messages its views queue."""
    tables: set[str] = set()
    errors: list[str] = []

    def note_writes(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        match = WRITE.match(sql)
        if match and match.group(1) not in UNWATCHED_TABLES and not match.group(1).startswith(UNWATCHED_PREFIXES):
            tables.add(match.group(1))
        return execute(sql, params, many, context)

    original_add = BaseStorage.add

    def note_message(storage: BaseStorage, level: int, message: Any, extra_tags: str = "") -> None:
        if level >= messages.ERROR:
            errors.append(str(message))
        original_add(storage, level, message, extra_tags)

    with connection.execute_wrapper(note_writes), mock.patch.object(BaseStorage, "add", note_message):
        yield tables, errors


class _Undo(Exception):
    pass


def send(client: Client, method: str, url: str, data: list[tuple[str, str]] | None = None) -> Answer:
    """Send one request, note what it wrote and said, then roll it all back (cookies too): every request sees
    the same world."""
    cookies = copy.deepcopy(client.cookies)
    after: dict[str, list[str]] = {}
    response: HttpResponse | None = None
    errors: list[str] = []
    try:
        with transaction.atomic():
            with _watching() as (tables, errors):
                if method == "get":
                    query = urlencode(data or [], doseq=True)
                    response = client.get(f"{urlsplit(url).path}?{query}" if data is not None else url)
                else:
                    body = urlencode(data or [])
                    response = client.post(url, body, content_type="application/x-www-form-urlencoded")
            try:
                after = {t: _table_rows(t) for t in tables}
            except DatabaseError:  # the request broke the transaction: it answered 5xx, and all is undone
                after = {}
            raise _Undo
    except _Undo:
        pass
    finally:
        client.cookies = cookies
    assert response is not None
    return Answer(response, errors, {t: _table_rows(t) != rows for t, rows in after.items()})

# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the worker agent needs from whatever runs a worker's apps: the one interface it calls.

The agent (agent.py) carries out the control plane's commands through a ``Backend`` and nothing
else; it never sees HTTP, NocoBase's answers or its error codes. ``nocobase_api.MultiAppManager``
is today's backend: open-source NocoBase 2.x with ``@nocobase/plugin-multi-app-manager``, which
NocoBase has deprecated and will remove in NocoBase 3 (docs/agent.md, "The backend"). A second
backend (for example NocoBase 3's own app API) implements this class and is chosen in
``agent.Agent``; the consumer, the protocol and the tests of both stay as they are.
"""

from __future__ import annotations

import abc
import collections

# The state of one app in this worker, as the backend reports it. ``status`` is ``running``,
# ``stopped``, ``error``, or any other word for "on its way" (``preparing``, ``initializing`` ...);
# ``auto_start`` is whether the worker starts the app by itself when it restarts.
App = collections.namedtuple("App", "status auto_start")

# The outcome of one look at whether an app answers as itself: ``state`` is ``running``,
# ``failed`` (the backend says the app cannot run; ``detail`` says why) or ``pending``.
Probe = collections.namedtuple("Probe", "state detail")


class BackendError(Exception):
    """A failed call, phrased for the operator (never with a secret in it).

    ``unreachable`` is true when the backend did not answer at all (a transport failure, or a
    gateway in front of it answering 502 to 504): the command is deferred, not failed.
    """

    def __init__(self, message, status=None, code=None):
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def unreachable(self):
        return self.status is None or self.status >= 502


class AuthError(BackendError):
    """The backend refuses the platform's root account."""


class Backend(abc.ABC):
    """One worker's app runtime. Every method raises BackendError when the backend fails."""

    @abc.abstractmethod
    def health(self):
        """(ok, detail): whether the worker is up and may be given commands; never raises."""

    @abc.abstractmethod
    def sign_in(self):
        """Check the platform's root account (AuthError when refused) and keep what later calls need."""

    @abc.abstractmethod
    def version(self):
        """The worker's NocoBase version (the environment record's ``appVersion``)."""

    @abc.abstractmethod
    def get_app(self, name):
        """The App of one app in this worker, or None when the worker does not have it."""

    @abc.abstractmethod
    def list_apps(self):
        """{name: App} of every app in this worker."""

    @abc.abstractmethod
    def create_app(self, name, title, cname, options, auto_start):
        """Create the app in this worker (its database is created or found by the worker) and,
        with ``auto_start``, start it."""

    @abc.abstractmethod
    def set_auto_start(self, name, auto_start):
        """Whether the worker starts the app by itself when the worker restarts."""

    @abc.abstractmethod
    def start_app(self, name):
        """Start an app that is stopped or failed (never called for one that runs or is starting)."""

    @abc.abstractmethod
    def stop_app(self, name):
        """Stop an app; get_app reports it ``stopped`` (or not there) once it has stopped."""

    @abc.abstractmethod
    def destroy_app(self, name):
        """Remove the app from this worker, keeping its database (a command never drops data)."""

    @abc.abstractmethod
    def probe_app(self, name):
        """A Probe: does the app answer as itself? The look may start an app the worker boots lazily."""

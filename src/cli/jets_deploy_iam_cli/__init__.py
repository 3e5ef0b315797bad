"""The command line for people (plan, drift, apply, invoke, demo) and the local stand-ins it uses.

A separate package from the function's (``jets_deploy_iam``): the Lambda bundle holds only what
the function imports, and nothing here is imported by the function.
"""

from __future__ import annotations

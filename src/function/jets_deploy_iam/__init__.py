"""jets-deploy-iam: the IAM group Ruby on Jets deployers need, as a CloudFormation custom resource.

The package is a pure core (``spec``, ``policy``, ``state``, ``plan``) with thin edges (``iam`` for
the AWS API, ``handler`` for CloudFormation, ``cli`` for people).
"""

from __future__ import annotations

__version__ = "0.1.0"

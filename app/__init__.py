"""policy-enforcer: a GitHub App that keeps an organization's repositories compliant."""

__version__ = "0.1.0"

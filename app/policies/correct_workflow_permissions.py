"""The default GITHUB_TOKEN permissions for Actions workflows are read-only."""

from __future__ import annotations

from typing import ClassVar

from app.policies.base import (
    NO_PARAMS,
    Needs,
    NoParams,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
    SettingRemedy,
)


class CorrectWorkflowPermissions(PolicyBase):
    type: ClassVar[str] = "correct_workflow_permissions"
    title: ClassVar[str] = "Workflows get a read-only GITHUB_TOKEN by default"
    needs: ClassVar[Needs] = Needs(workflow_permissions=True)
    remedy: ClassVar[Remedy | None] = SettingRemedy("default_workflow_permissions", "read")

    def evaluate(self, snapshot: RepoSnapshot, params: NoParams = NO_PARAMS) -> Result:
        perms = snapshot.workflow_permissions
        if perms is None:
            return Result(True, "GitHub Actions is disabled; no workflow token to restrict.")
        if perms == "read":
            return Result(True, "Default workflow permissions are read-only.")
        return Result(
            False,
            f"`{snapshot.full_name}` gives workflows a `{perms}` GITHUB_TOKEN by default. "
            "In Settings → Actions → General → Workflow permissions, choose "
            "\"Read repository contents and packages permissions\", and grant more per "
            "workflow with a `permissions:` block where a job needs it.",
            {"default_workflow_permissions": perms},
        )


POLICY = CorrectWorkflowPermissions()

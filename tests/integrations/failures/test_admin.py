"""The failures console: a failure's page with its attempts and its actions; the bulk retry."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from integrations.failures.models import IntegrationFailure, RetryPolicy, Status
from tests.integrations.failures.support import published, report

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:failures_integrationfailure_changelist")


@pytest.fixture
def operator(client):
    user = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def page_of(failure: IntegrationFailure) -> str:
    return reverse("admin:failures_integrationfailure_change", args=[failure.pk])


def action_url(failure: IntegrationFailure, name: str) -> str:
    return reverse(f"admin:failures_integrationfailure_{name}", args=[failure.pk])


def test_a_failures_page_shows_its_attempts_its_policy_and_its_actions(tenant, operator):
    failure = report(tenant, error="401 Bad credentials", status=401)

    page = operator.get(page_of(failure)).content.decode()

    assert "401 Bad credentials" in page
    assert "maximumAttempts" in page
    for name in ("retry", "acknowledge", "ignore"):
        assert action_url(failure, name) in page
    assert operator.get(CHANGELIST).status_code == 200


def test_the_object_actions_act_under_the_operators_name(tenant, operator):
    failure = report(tenant, error="401", status=401)

    operator.post(action_url(failure, "acknowledge"))
    failure.refresh_from_db()
    assert (failure.status, failure.status_by) == (Status.ACKNOWLEDGED, "console user ops")

    operator.post(action_url(failure, "retry"))
    failure.refresh_from_db()
    assert failure.status == Status.RETRYING
    assert len(published("IntegrationSyncRequested")) == 1

    response = operator.post(action_url(failure, "retry"), follow=True)
    assert "in flight" in " ".join(str(m) for m in response.context["messages"])

    operator.post(action_url(failure, "ignore"))
    failure.refresh_from_db()
    assert failure.status == Status.IGNORED


def test_bulk_retry_asks_first_then_retries(tenant, operator):
    first = report(tenant, failure_id="p-1", error="401", status=401)
    second = report(tenant, failure_id="p-2", error="401", status=401)
    form = {"action": "retry_selected", "_selected_action": [first.pk, second.pk]}

    preview = operator.post(CHANGELIST, form)
    assert published("IntegrationSyncRequested") == []
    assert "2 of 2 selected failures would be retried" in preview.content.decode()

    operator.post(CHANGELIST, {**form, "post": "yes"})
    assert len(published("IntegrationSyncRequested")) == 2


def test_a_retry_policy_is_validated(operator):
    add = reverse("admin:failures_retrypolicy_add")
    form = {
        "provider": "github",
        "kind": "sync",
        "initial_interval_seconds": "60",
        "backoff_coefficient": "0.5",
        "maximum_attempts": "5",
        "non_retryable_error_classes": '["auth", "nonsense"]',
        "attempt_timeout_seconds": "600",
    }

    refused = operator.post(add, form)
    assert refused.status_code == 200
    assert "At least 1" in refused.content.decode()
    assert not RetryPolicy.objects.exists()

    operator.post(
        add, {**form, "backoff_coefficient": "3", "non_retryable_error_classes": '["auth"]'}
    )
    assert RetryPolicy.objects.get().as_policy().backoff_coefficient == 3

"""The webhook subscriptions API: thin views over the webhooks domain (integrations.webhooks) and
integrations.selectors, with input and output serializers. Every lookup is by the caller's
tenant, so another tenant's subscription is simply not found."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pager, SinceField, paged
from integrations import selectors
from integrations.models import WebhookDelivery, WebhookSubscription
from integrations.webhooks.delivery import recover, redeliver
from integrations.webhooks.subscriptions import (
    create_subscription,
    delete_subscription,
    rotate_secret,
    update_subscription,
)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class SubscriptionOutput(serializers.ModelSerializer):
    """A subscription as its owner sees it: never its secret, which only the replies that
    create or rotate it carry."""

    eventTypes = serializers.ListField(source="event_types")
    disabledReason = serializers.CharField(source="disabled_reason")
    lastSuccess = serializers.DateTimeField(source="last_success")
    failingSince = serializers.DateTimeField(source="failing_since")

    class Meta:
        model = WebhookSubscription
        fields = [
            "id", "url", "eventTypes", "description", "enabled", "disabledReason",
            "lastSuccess", "failingSince", "created", "updated",
        ]  # fmt: skip


class SubscriptionInput(serializers.Serializer):
    # Not trimmed: a space or line break anywhere in a URL is refused, with where it is.
    url = serializers.CharField(max_length=2000, trim_whitespace=False)
    eventTypes = serializers.ListField(
        child=serializers.CharField(max_length=100), allow_empty=False, max_length=100
    )
    description = serializers.CharField(
        max_length=500, required=False, default="", allow_blank=True
    )
    enabled = serializers.BooleanField(required=False, default=True)


class SubscriptionPage(Pager):
    page_size = 50
    max_page_size = 500
    ordering = ("-created", "-id")


def _subscription_or_404(request, subscription_id: str) -> WebhookSubscription:
    found = selectors.subscription(tenant=request.user.tenant, subscription_id=subscription_id)
    if found is None:
        raise _not_found(subscription_id)
    return found


def _not_found(subscription_id: str) -> exceptions.NotFound:
    return exceptions.NotFound(f"No webhook subscription {subscription_id} for this tenant.")


class SubscriptionListView(APIView):
    """POST /api/webhooks/subscriptions: subscribe, and get the signing secret (only now).
    GET: the caller's subscriptions, newest first, paged."""

    def post(self, request):
        body = SubscriptionInput(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        subscription, secret = create_subscription(
            tenant=request.user.tenant,
            url=v["url"],
            event_types=v["eventTypes"],
            description=v["description"],
            enabled=v["enabled"],
        )
        reply = {**SubscriptionOutput(subscription).data, "secret": secret}
        return Response(reply, status=status.HTTP_201_CREATED)

    def get(self, request):
        found = selectors.subscriptions(tenant=request.user.tenant)
        return paged(self, request, found, pager=SubscriptionPage, output=SubscriptionOutput)


class SubscriptionDetailView(APIView):
    """GET, PATCH (url, eventTypes, description, enabled) and DELETE one subscription."""

    class PatchInput(SubscriptionInput):
        url = serializers.CharField(max_length=2000, required=False, trim_whitespace=False)
        eventTypes = serializers.ListField(
            child=serializers.CharField(max_length=100), allow_empty=False, required=False
        )
        description = serializers.CharField(max_length=500, required=False, allow_blank=True)
        enabled = serializers.BooleanField(required=False)

    FIELDS = {"url": "url", "eventTypes": "event_types", "description": "description"}

    def get(self, request, subscription_id: str):
        return Response(SubscriptionOutput(_subscription_or_404(request, subscription_id)).data)

    def patch(self, request, subscription_id: str):
        subscription = _subscription_or_404(request, subscription_id)
        body = self.PatchInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        changes = {self.FIELDS.get(k, k): v for k, v in body.validated_data.items()}
        try:
            stored = update_subscription(subscription=subscription, **changes)
        except WebhookSubscription.DoesNotExist:  # deleted since it was looked up
            raise _not_found(subscription_id) from None
        return Response(SubscriptionOutput(stored).data)

    def delete(self, request, subscription_id: str):
        subscription = _subscription_or_404(request, subscription_id)
        delete_subscription(subscription=subscription)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RotateSecretView(APIView):
    """POST /api/webhooks/subscriptions/<id>/rotate-secret: a new secret, shown this once; the
    old one keeps signing beside it for WEBHOOK_SECRET_OVERLAP_SECONDS."""

    def post(self, request, subscription_id: str):
        subscription = _subscription_or_404(request, subscription_id)
        try:
            secret, expires = rotate_secret(subscription=subscription)
        except WebhookSubscription.DoesNotExist:  # deleted since it was looked up
            raise _not_found(subscription_id) from None
        return Response({"secret": secret, "previousSecretExpires": expires})


class AttemptOutput(serializers.Serializer):
    number = serializers.IntegerField()
    at = serializers.DateTimeField()
    statusCode = serializers.IntegerField(source="status_code")
    latencyMs = serializers.IntegerField(source="latency_ms")
    error = serializers.CharField()
    responseBody = serializers.CharField(source="response_body")


class DeliveryOutput(serializers.ModelSerializer):
    webhookId = serializers.CharField(source="webhook_id")
    subscriptionId = serializers.UUIDField(source="subscription_id")
    eventId = serializers.UUIDField(source="event_id")
    eventType = serializers.CharField(source="event_type")
    lastAttemptAt = serializers.DateTimeField(source="last_attempt_at")
    nextAttemptAt = serializers.DateTimeField(source="next_attempt_at")
    deliveredAt = serializers.DateTimeField(source="delivered_at")
    lastStatus = serializers.IntegerField(source="last_status")
    lastError = serializers.CharField(source="last_error")
    attemptLog = AttemptOutput(source="attempt_log", many=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "webhookId", "subscriptionId", "eventId", "eventType", "state", "attempts",
            "created", "lastAttemptAt", "nextAttemptAt", "deliveredAt", "lastStatus",
            "lastError", "attemptLog",
        ]  # fmt: skip


class DeliveryPage(Pager):
    page_size = 50
    max_page_size = 500
    ordering = ("-created", "-id")


class DeliveryListView(APIView):
    """GET /api/webhooks/subscriptions/<id>/deliveries?state=: deliveries with their attempts,
    newest first, paged."""

    class FilterSerializer(serializers.Serializer):
        state = serializers.ChoiceField(
            choices=WebhookDelivery.State.values, required=False, default=""
        )

    def get(self, request, subscription_id: str):
        subscription = _subscription_or_404(request, subscription_id)
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.deliveries(subscription=subscription, **query.validated_data)
        return paged(self, request, found, pager=DeliveryPage, output=DeliveryOutput)


class RedeliverView(APIView):
    """POST /api/webhooks/deliveries/<id>/redeliver: send a failed (dead or retrying) delivery
    again now, with the same webhook-id."""

    def post(self, request, delivery_id: str):
        delivery = selectors.delivery(tenant=request.user.tenant, delivery_id=delivery_id)
        if delivery is None:
            raise exceptions.NotFound(f"No webhook delivery {delivery_id} for this tenant.")
        if not redeliver(delivery=delivery):
            raise Conflict(
                f"Delivery {delivery_id} is {delivery.state}: only a failed delivery (dead, or "
                "retrying and not being sent at this moment) is redelivered."
            )
        return Response({"id": str(delivery.pk), "redelivered": True}, status=202)


class RecoverView(APIView):
    """POST /api/webhooks/subscriptions/<id>/recover?since=: redeliver every failed delivery
    of the subscription created since then (an ISO time, or a duration such as 6h)."""

    class QueryInput(serializers.Serializer):
        since = SinceField()

    def post(self, request, subscription_id: str):
        subscription = _subscription_or_404(request, subscription_id)
        data = request.query_params if "since" in request.query_params else request.data
        query = self.QueryInput(data=data)
        query.is_valid(raise_exception=True)
        since = query.validated_data["since"]
        count = recover(subscription=subscription, since=since)
        return Response(
            {"recovered": count, "since": since.isoformat(), "at": timezone.now().isoformat()},
            status=202,
        )

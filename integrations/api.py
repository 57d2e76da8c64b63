"""The webhook subscriptions API: thin views over the webhooks domain (integrations.webhooks) and
integrations.selectors, with input and output serializers. Every lookup is by the caller's
tenant, so another tenant's subscription is simply not found."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pager, SinceField, paged
from core.openapi import errors
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

    eventTypes = serializers.ListField(source="event_types", child=serializers.CharField())
    disabledReason = serializers.CharField(source="disabled_reason")
    lastSuccess = serializers.DateTimeField(source="last_success", allow_null=True)
    failingSince = serializers.DateTimeField(source="failing_since", allow_null=True)

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


class CreatedSubscriptionOutput(SubscriptionOutput):
    """The reply that creates a subscription: the subscription and its signing secret, which
    no other reply shows."""

    secret = serializers.CharField(help_text="The signing secret (whsec_...): shown this once.")

    class Meta(SubscriptionOutput.Meta):
        fields = [*SubscriptionOutput.Meta.fields, "secret"]


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


SUBSCRIPTION_ID = OpenApiParameter(
    "subscription_id", str, OpenApiParameter.PATH, description="The subscription's id (a UUID)."
)


class SubscriptionListView(APIView):
    """POST /api/webhooks/subscriptions: subscribe, and get the signing secret (only now).
    GET: the caller's subscriptions, newest first, paged."""

    pagination_class = SubscriptionPage

    @extend_schema(
        summary="Subscribe to events",
        request=SubscriptionInput,
        responses={201: CreatedSubscriptionOutput, **errors(400, 401, 413, 415)},
    )
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

    @extend_schema(
        summary="List subscriptions",
        responses={200: SubscriptionOutput(many=True), **errors(400, 401)},
    )
    def get(self, request):
        found = selectors.subscriptions(tenant=request.user.tenant)
        return paged(self, request, found, output=SubscriptionOutput)


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

    @extend_schema(
        summary="A subscription",
        parameters=[SUBSCRIPTION_ID],
        responses={200: SubscriptionOutput, **errors(401, 404)},
    )
    def get(self, request, subscription_id: str):
        return Response(SubscriptionOutput(_subscription_or_404(request, subscription_id)).data)

    @extend_schema(
        summary="Change a subscription",
        parameters=[SUBSCRIPTION_ID],
        request=PatchInput,
        responses={200: SubscriptionOutput, **errors(400, 401, 404, 413, 415)},
    )
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

    @extend_schema(
        summary="Delete a subscription",
        parameters=[SUBSCRIPTION_ID],
        responses={204: None, **errors(401, 404)},
    )
    def delete(self, request, subscription_id: str):
        subscription = _subscription_or_404(request, subscription_id)
        delete_subscription(subscription=subscription)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RotatedSecretOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret: shown this once.")
    previousSecretExpires = serializers.DateTimeField(
        help_text="Until then the old secret signs beside the new one."
    )


class RotateSecretView(APIView):
    """POST /api/webhooks/subscriptions/<id>/rotate-secret: a new secret, shown this once; the
    old one keeps signing beside it for WEBHOOK_SECRET_OVERLAP_SECONDS."""

    @extend_schema(
        summary="Rotate a subscription's signing secret",
        parameters=[SUBSCRIPTION_ID],
        request=None,
        responses={200: RotatedSecretOutput, **errors(401, 404)},
    )
    def post(self, request, subscription_id: str):
        subscription = _subscription_or_404(request, subscription_id)
        try:
            secret, expires = rotate_secret(subscription=subscription)
        except WebhookSubscription.DoesNotExist:  # deleted since it was looked up
            raise _not_found(subscription_id) from None
        return Response(
            RotatedSecretOutput({"secret": secret, "previousSecretExpires": expires}).data
        )


class AttemptOutput(serializers.Serializer):
    number = serializers.IntegerField()
    at = serializers.DateTimeField()
    statusCode = serializers.IntegerField(
        source="status_code", allow_null=True, help_text="Null when no reply came."
    )
    latencyMs = serializers.IntegerField(source="latency_ms")
    error = serializers.CharField()
    responseBody = serializers.CharField(source="response_body")


class DeliveryOutput(serializers.ModelSerializer):
    webhookId = serializers.CharField(source="webhook_id")
    subscriptionId = serializers.UUIDField(source="subscription_id")
    eventId = serializers.UUIDField(source="event_id")
    eventType = serializers.CharField(source="event_type")
    lastAttemptAt = serializers.DateTimeField(source="last_attempt_at", allow_null=True)
    nextAttemptAt = serializers.DateTimeField(source="next_attempt_at", allow_null=True)
    deliveredAt = serializers.DateTimeField(source="delivered_at", allow_null=True)
    lastStatus = serializers.IntegerField(source="last_status", allow_null=True)
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

    pagination_class = DeliveryPage

    @extend_schema(
        summary="List a subscription's deliveries",
        parameters=[SUBSCRIPTION_ID, FilterSerializer],
        responses={200: DeliveryOutput(many=True), **errors(400, 401, 404)},
    )
    def get(self, request, subscription_id: str):
        subscription = _subscription_or_404(request, subscription_id)
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = selectors.deliveries(subscription=subscription, **query.validated_data)
        return paged(self, request, found, output=DeliveryOutput)


class RedeliveredOutput(serializers.Serializer):
    id = serializers.UUIDField()
    redelivered = serializers.BooleanField()


class RedeliverView(APIView):
    """POST /api/webhooks/deliveries/<id>/redeliver: send a failed (dead or retrying) delivery
    again now, with the same webhook-id."""

    @extend_schema(
        summary="Redeliver a failed delivery",
        parameters=[
            OpenApiParameter(
                "delivery_id", str, OpenApiParameter.PATH, description="The delivery's id."
            )
        ],
        request=None,
        responses={202: RedeliveredOutput, **errors(401, 404, 409)},
    )
    def post(self, request, delivery_id: str):
        delivery = selectors.delivery(tenant=request.user.tenant, delivery_id=delivery_id)
        if delivery is None:
            raise exceptions.NotFound(f"No webhook delivery {delivery_id} for this tenant.")
        if not redeliver(delivery=delivery):
            raise Conflict(
                f"Delivery {delivery_id} is {delivery.state}: only a failed delivery (dead, or "
                "retrying and not being sent at this moment) is redelivered."
            )
        return Response(
            RedeliveredOutput({"id": delivery.pk, "redelivered": True}).data, status=202
        )


class RecoveredOutput(serializers.Serializer):
    recovered = serializers.IntegerField(help_text="How many deliveries were queued again.")
    since = serializers.DateTimeField()
    at = serializers.DateTimeField()


class RecoverView(APIView):
    """POST /api/webhooks/subscriptions/<id>/recover?since=: redeliver every failed delivery
    of the subscription created since then (an ISO time, or a duration such as 6h)."""

    class QueryInput(serializers.Serializer):
        since = SinceField()

    @extend_schema(
        summary="Redeliver a subscription's failed deliveries since a time",
        parameters=[
            SUBSCRIPTION_ID,
            OpenApiParameter(
                "since",
                str,
                description="An ISO time, or a duration back from now (6h); here, or as "
                "`since` in the JSON body.",
            ),
        ],
        request=QueryInput,
        responses={202: RecoveredOutput, **errors(400, 401, 404, 413, 415)},
    )
    def post(self, request, subscription_id: str):
        subscription = _subscription_or_404(request, subscription_id)
        data = request.query_params if "since" in request.query_params else request.data
        query = self.QueryInput(data=data)
        query.is_valid(raise_exception=True)
        since = query.validated_data["since"]
        count = recover(subscription=subscription, since=since)
        reply = {"recovered": count, "since": since, "at": timezone.now()}
        return Response(RecoveredOutput(reply).data, status=202)

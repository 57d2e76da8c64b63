"""A table for the side effects of test handlers: a handler that acts twice leaves two rows."""

from django.db import models


class Effect(models.Model):
    event_id = models.UUIDField()
    worker = models.CharField(max_length=64)
    pid = models.IntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.worker} handled {self.event_id}"

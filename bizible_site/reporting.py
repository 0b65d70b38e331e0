from django.views.debug import SafeExceptionReporterFilter


class AlwaysSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Hide sensitive POST fields and variables on the DEBUG error page too, not only in
    production reports: a developer's shared screen or pasted error page must not carry a
    customer's client secret."""

    def is_active(self, request) -> bool:
        return True

// Exports one trace (a root span and a failed child) with the OpenTelemetry JavaScript SDK's
// OTLP/HTTP JSON exporter, as a Node service would, and prints what the exporter reported.
//   node export_traces.mjs <traces endpoint URL> <API key> [gzip|none]
import { context, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";

const [url, key, compression = "none"] = process.argv.slice(2);
const finished = new InMemorySpanExporter();
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ "service.name": "storefront" }),
  spanProcessors: [new SimpleSpanProcessor(finished)],
});
const tracer = provider.getTracer("tests");
const root = tracer.startSpan("GET /cart");
const child = tracer.startSpan("SELECT cart", {}, trace.setSpan(context.active(), root));
child.setStatus({ code: SpanStatusCode.ERROR, message: "timeout" });
child.end();
root.end();
await provider.forceFlush();

const exporter = new OTLPTraceExporter({ url, headers: { Authorization: `Bearer ${key}` }, compression });
const result = await new Promise((resolve) => exporter.export(finished.getFinishedSpans(), resolve));
await exporter.shutdown();
console.log(JSON.stringify({
  traceId: root.spanContext().traceId,
  code: result.code, // 0: success, 1: failed
  error: result.error ? String(result.error) : null,
}));

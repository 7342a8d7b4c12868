// The runner's own metrics endpoint (RUNNER_METRICS_PORT): a runner started alone serves no API, so
// Prometheus scrapes it here. `npm start` serves the same registry from the API's GET /metrics.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PlatformMetrics } from './metrics.ts';
import { bearerMatches } from './http.ts';

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

export function serveMetrics(metrics: PlatformMetrics, opts: { host: string; port: number; token: string | null }): Promise<MetricsServer> {
  const json = (res: http.ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}) => {
    const body = JSON.stringify({ error: { code, message } });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
  };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') return json(res, 404, 'not_found', `no route for ${req.method} ${path}`);
    if (opts.token && !bearerMatches(req.headers.authorization, opts.token)) {
      return json(res, 401, 'unauthorized', 'missing or invalid bearer token (METRICS_TOKEN)', { 'www-authenticate': 'Bearer realm="containerpub"' });
    }
    metrics.exposition().then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      },
      () => json(res, 500, 'internal', 'the metrics could not be collected'),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      const a = server.address() as AddressInfo;
      const host = a.address.includes(':') ? `[${a.address}]` : a.address;
      resolve({
        url: `http://${host}:${a.port}`,
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      });
    });
  });
}

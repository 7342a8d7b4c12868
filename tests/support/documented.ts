// Every answer the tests' HTTP client (http.ts) gets is checked against the OpenAPI document: its
// status must be one the document lists for the route, and its body must match that status's
// schema (an error: the envelope, with one of the codes listed). A test that sees an undocumented
// answer fails, saying what differs.
import * as assert from 'uvu/assert';
import { checkDocumented } from '../../api/openapi.ts';
import { routeDocs } from '../../api/openapi-routes.ts';

export interface Answer {
  status: number;
  body: unknown;
  headers: Headers;
}

/** Fails, naming the route and what differs, when an answer is not what the document says. */
export function expectDocumented(res: Answer, method: string, path: string): void {
  const problems = checkDocumented(routeDocs, { method, path }, res);
  if (problems.length > 0) {
    const body = JSON.stringify(res.body)?.slice(0, 500);
    assert.unreachable(`an answer the OpenAPI document does not describe:\n  ${problems.slice(0, 10).join('\n  ')}\n  body: ${body}`);
  }
}

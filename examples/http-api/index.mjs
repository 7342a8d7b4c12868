// A small JSON API served on the function's endpoint: a to-do list with routing, in plain Web
// Request/Response (no dependencies, no framework).
//
//   GET    /todos            the list (?done=true|false filters it)
//   POST   /todos            {"title": "…"} → 201 with the new to-do, and its address in Location
//   GET    /todos/:id        one to-do
//   PATCH  /todos/:id        {"title"?, "done"?}
//   DELETE /todos/:id        204
//   GET    /                 what this is, and which version answered
//
// Unknown paths get a JSON 404, a known path with the wrong method a JSON 405 with Allow.
//
// The list lives in module state: it lasts as long as the warm instance that holds it, and each
// instance has its own. It is a demonstration; keep anything that must survive in a database.

const todos = new Map();
let nextId = 1;

const routes = [
  { path: /^\/$/, methods: { GET: about } },
  { path: /^\/todos\/?$/, methods: { GET: listTodos, POST: createTodo } },
  { path: /^\/todos\/(?<id>[0-9]+)$/, methods: { GET: getTodo, PATCH: updateTodo, DELETE: deleteTodo } },
];

export default {
  async fetch(request, context) {
    const url = new URL(request.url);
    for (const route of routes) {
      const match = route.path.exec(url.pathname);
      if (!match) continue;
      const handler = route.methods[request.method];
      if (!handler) {
        const allow = Object.keys(route.methods).join(', ');
        return json(405, { error: 'method_not_allowed', message: `${request.method} is not allowed on ${url.pathname} (allowed: ${allow})` }, { allow });
      }
      try {
        return await handler({ request, url, params: match.groups ?? {}, context });
      } catch (err) {
        if (err instanceof BadRequest) return json(400, { error: 'bad_request', message: err.message });
        throw err; // anything else is a bug: the platform answers 502 and the stack is in the logs
      }
    }
    return json(404, { error: 'not_found', message: `no route for ${request.method} ${url.pathname}` });
  },
};

function about({ context }) {
  return json(200, {
    service: 'todos',
    version: context?.version ?? null,
    routes: ['GET /todos', 'POST /todos', 'GET /todos/:id', 'PATCH /todos/:id', 'DELETE /todos/:id'],
  });
}

function listTodos({ url }) {
  const done = url.searchParams.get('done');
  let list = [...todos.values()];
  if (done === 'true' || done === 'false') list = list.filter((t) => t.done === (done === 'true'));
  return json(200, { todos: list });
}

async function createTodo({ request }) {
  const body = await readJson(request);
  const title = typeof body?.title === 'string' ? body.title.trim() : '';
  if (title === '') throw new BadRequest('"title" must be a non-empty string');
  const todo = { id: nextId++, title, done: false, createdAt: new Date().toISOString() };
  todos.set(todo.id, todo);
  // x-forwarded-prefix is the path the platform served this function under (/fn/{handle}/{name}),
  // so the address works from outside; it is empty under host-based routing.
  const prefix = request.headers.get('x-forwarded-prefix') ?? '';
  return json(201, todo, { location: `${prefix}/todos/${todo.id}` });
}

function getTodo({ params }) {
  const todo = todos.get(Number(params.id));
  return todo ? json(200, todo) : notFound(params.id);
}

async function updateTodo({ request, params }) {
  const todo = todos.get(Number(params.id));
  if (!todo) return notFound(params.id);
  const body = await readJson(request);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadRequest('the body must be a JSON object');
  if ('title' in body) {
    if (typeof body.title !== 'string' || body.title.trim() === '') throw new BadRequest('"title" must be a non-empty string');
    todo.title = body.title.trim();
  }
  if ('done' in body) {
    if (typeof body.done !== 'boolean') throw new BadRequest('"done" must be true or false');
    todo.done = body.done;
  }
  return json(200, todo);
}

function deleteTodo({ params }) {
  if (!todos.delete(Number(params.id))) return notFound(params.id);
  return new Response(null, { status: 204 });
}

class BadRequest extends Error {}

async function readJson(request) {
  const text = await request.text();
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequest('the body is not valid JSON');
  }
}

function notFound(id) {
  return json(404, { error: 'not_found', message: `no to-do ${id}` });
}

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  });
}

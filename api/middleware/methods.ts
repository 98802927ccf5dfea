/**
 * A known path asked with a method it does not serve is a 405 with `Allow` listing those it does (HEAD
 * with GET), not a 404: added to a router after its routes, from the routes it holds.
 */
import type { Router } from 'express';
import { HttpError } from '../errors.js';

interface RouteLayer {
  route?: { path: string | string[]; methods: Record<string, boolean> };
}

export function methodNotAllowed<R extends Router>(router: R): R {
  const allowed = new Map<string, Set<string>>();
  for (const layer of router.stack as RouteLayer[]) {
    if (!layer.route) continue;
    for (const p of ([] as string[]).concat(layer.route.path)) {
      const methods = allowed.get(p) ?? new Set<string>();
      for (const [m, on] of Object.entries(layer.route.methods))
        if (on && m !== '_all') methods.add(m.toUpperCase());
      if (methods.has('GET')) methods.add('HEAD');
      allowed.set(p, methods);
    }
  }
  for (const [p, methods] of allowed) {
    if (methods.size === 0) continue;
    const allow = [...methods].sort().join(', ');
    router.all(p, (req, _res, next) =>
      next(
        new HttpError(
          405,
          'METHOD_NOT_ALLOWED',
          `${req.method} is not allowed on ${req.originalUrl.split('?')[0]}; use ${allow}`,
          {},
          { Allow: allow },
        ),
      ),
    );
  }
  return router;
}

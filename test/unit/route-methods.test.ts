import t from 'tap';
import { RouteMethods } from '../../src/route-methods.js';

t.test('Allow lists every method the router would route for a path', async (t) => {
  const routes = new RouteMethods();
  routes.add('POST', '/bundles/upload');
  routes.add('GET', '/bundles/:id');
  routes.add('DELETE', '/bundles/:id');
  routes.add('POST', '/containers/:id/start');
  t.same(routes.find('/bundles/upload?x=1')?.methods, ['DELETE', 'GET', 'HEAD', 'POST']);
  t.same(routes.find('/bundles/b1')?.methods, ['DELETE', 'GET', 'HEAD']);
  t.same(routes.find('/containers/c1/start/')?.methods, ['POST']);
  t.equal(routes.find('/containers/c1/nothing'), undefined);
  t.equal(routes.find('/bundles'), undefined);
});

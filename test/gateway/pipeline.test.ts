import t from 'tap'
import { startTestStack } from '../helper.ts'

t.test('the pipeline reads in order: every route runs the named stages, identity before access', async (t) => {
  const stack = await startTestStack(t)
  const routes = stack.gateway.printRoutes({ includeHooks: true, commonPrefix: false })
  const onRequest = [...routes.matchAll(/\(onRequest\) (\[.*\])/g)].map((match) => JSON.parse(match[1]) as string[])
  t.ok(onRequest.length > 10, 'hooks are listed for every route')
  for (const hooks of onRequest) {
    t.same(hooks.slice(0, 6), ['returnRequestId()', 'handleCors()', 'hygiene()', 'rateLimit()', 'identify()', 'authorise()'])
  }
  t.notMatch(routes, /anonymous\(\)/, 'no anonymous hook')
  t.match(routes, /\(preHandler\) \["checkRedirectTargets\(\)"\]/, 'the auth proxy checks redirect targets by name')
})

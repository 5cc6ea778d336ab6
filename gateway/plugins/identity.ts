import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { ClientTokenVerifier, EdDsaSigner, JwtKeys } from '../../shared/jwt.ts'
import { KeyRing } from '../../shared/signing-keys.ts'
import type { KeyPurpose } from '../../shared/signing-keys.ts'
import { IdentityResolver } from '../identity/identity-resolver.ts'
import { RevocationBus } from '../identity/revocation-bus.ts'
import type { ClaimProvider, ClientTokens, Identity, IdentityResolverOptions, Resolution } from '../identity/identity-resolver.ts'

const SWEEP_INTERVAL_MS = 30_000

declare module 'fastify' {
  interface FastifyInstance {
    /** The Ed25519 keys of identity tokens (and of client tokens with `JWT_ALG=EdDSA`), published at `/auth/jwks`. */
    keyRing: KeyRing
    clientTokens: ClientTokens
    identities: IdentityResolver
    /** Extra claims for upstream identity tokens; plugins push providers at registration. */
    identityClaimProviders: ClaimProvider[]
  }
  interface FastifyRequest {
    /** Set by the identity stage for every later hook and the handler: the caller, or null when anonymous. */
    identity: Identity | null
    /** Set by the identity stage when the caller could not be resolved (auth-core or Postgres down, a bad token). */
    identityFailure: Resolution['error']
    /** Set when auth-core answered that it revoked every token of this user (revoke-all, password, deletion). */
    tokensRevokedFor: string | null
  }
}

export interface IdentityPluginOptions extends IdentityResolverOptions {
  /** Sign-outs and revocations broadcast to every replica (docs/redis.md); unset: this replica only. */
  redisUrl?: string
}

/** The caller's keys, token signers and resolver, as decorations every stage and route uses. */
async function identityPlugin (app: FastifyInstance, { redisUrl, ...options }: IdentityPluginOptions): Promise<void> {
  const jwtAlg = options.jwtAlg ?? 'HS256'
  const signs: KeyPurpose[] = jwtAlg === 'EdDSA' ? ['identity', 'client'] : ['identity']
  const keyRing = new KeyRing(app.pg, options.jwtSecret, {
    signs,
    onRefreshError: (err) => { app.log.warn({ err }, 'signing keys could not be refreshed') }
  })
  await keyRing.start()
  app.decorate('keyRing', keyRing)
  app.decorate('clientTokens', {
    signer: jwtAlg === 'EdDSA' ? new EdDsaSigner(keyRing, 'client') : new JwtKeys(options.jwtSecret),
    verifier: new ClientTokenVerifier(options.jwtSecret, jwtAlg === 'EdDSA' ? keyRing : null)
  })
  const identities = new IdentityResolver(app, { jwtAlg, ...options })
  app.decorate('identities', identities)
  if (redisUrl !== undefined) {
    const bus = await RevocationBus.connect(redisUrl, app.log, {
      apply: (revocation) => { identities.forget(revocation) },
      gap: () => { identities.forgetAll() }
    })
    identities.broadcastWith(async (revocation) => { await bus.publish(revocation) })
    app.addHook('onClose', async () => { bus.close() })
  }
  const sweeper = setInterval(() => { identities.sweep() }, SWEEP_INTERVAL_MS)
  sweeper.unref()
  app.addHook('onClose', async () => {
    clearInterval(sweeper)
    keyRing.stop()
  })
  app.decorate('identityClaimProviders', [])
  app.decorateRequest('identity', null)
  app.decorateRequest('identityFailure', null)
  app.decorateRequest('tokensRevokedFor', null)
}

export default fp(identityPlugin, { name: 'identity', dependencies: ['upstreams', 'pg'] })

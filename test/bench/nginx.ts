import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../ports.ts'
import { stop } from './children.ts'

// nginx as a reference proxy (one worker, upstream keep-alive), when installed.
const NGINX = '/usr/sbin/nginx'

/** nginx in front of the upstream, or `undefined` when it is not installed or does not answer; the caller removes `dir`. */
export async function startNginx (upstreamUrl: string): Promise<{ url: string, process: ChildProcess, dir: string } | undefined> {
  if (!existsSync(NGINX)) return undefined
  const dir = mkdtempSync(join(tmpdir(), 'auth-gateway-nginx-'))
  const port = await freePort()
  const upstream = new URL(upstreamUrl)
  writeFileSync(join(dir, 'nginx.conf'), `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream bench { server ${upstream.host}; keepalive 128; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`)
  const child = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 50; i++) {
    try {
      await fetch(`${url}/`)
      return { url, process: child, dir }
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  await stop(child)
  return undefined
}

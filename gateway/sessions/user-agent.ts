/** What a reader recognises of a device: the browser and the operating system, by family. */
export interface Device {
  browser: string | null
  os: string | null
}

// Order matters: Edge and Opera say "Chrome" too, Chrome says "Safari", iPadOS may say "Macintosh".
const BROWSERS: ReadonlyArray<[RegExp, string]> = [
  [/\bEdg(?:e|A|iOS)?\/(\d+)/, 'Edge'],
  [/\b(?:OPR|Opera)\/(\d+)/, 'Opera'],
  [/\bSamsungBrowser\/(\d+)/, 'Samsung Internet'],
  [/\b(?:Firefox|FxiOS)\/(\d+)/, 'Firefox'],
  [/\b(?:Chrome|CriOS|HeadlessChrome)\/(\d+)/, 'Chrome'],
  [/\bVersion\/(\d+)[^ ]* (?:Mobile\/\S+ )?Safari\//, 'Safari'],
  [/\bcurl\/(\d+)/, 'curl'],
  [/\bpython-requests\/(\d+)/, 'Python requests'],
  [/\bnode(?:-fetch)?\/?(\d+)?/i, 'Node.js']
]
const SYSTEMS: ReadonlyArray<[RegExp, string]> = [
  [/\b(?:iPhone|iPad|iPod)\b/, 'iOS'],
  [/\bAndroid\b/, 'Android'],
  [/\bCrOS\b/, 'ChromeOS'],
  [/\bWindows\b/, 'Windows'],
  [/\bMac OS X\b|\bMacintosh\b/, 'macOS'],
  [/\bLinux\b/, 'Linux']
]

/** The browser (with its major version) and OS of a `User-Agent`; `null` for what it does not name. A pure function. */
export function deviceOf (userAgent: string | null | undefined): Device {
  if (typeof userAgent !== 'string' || userAgent === '') return { browser: null, os: null }
  const ua = userAgent.slice(0, 512)
  let browser: string | null = null
  for (const [pattern, name] of BROWSERS) {
    const match = pattern.exec(ua)
    if (match !== null) {
      browser = match[1] === undefined ? name : `${name} ${match[1]}`
      break
    }
  }
  const os = SYSTEMS.find(([pattern]) => pattern.test(ua))?.[1] ?? null
  return { browser, os }
}

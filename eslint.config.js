import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Relative imports of these top-level folders (or core subfolders) are refused in the files a rule covers. */
const importsOf = (folders, why) => ({
  patterns: [{ regex: `^(\\.\\./)+(${folders.join('|')})/`, message: why }],
});

// The layer rules (README, "Layout"): deployables import only core, and none imports another; core's
// foundations never reach up into the service layers; tests don't import benchmarks.
const DEPLOYABLES = ['api', 'worker', 'precompute', 'cli', 'bench', 'test', 'infra'];
const deployableRule = (self) =>
  importsOf(
    DEPLOYABLES.filter((d) => d !== self),
    'a deployable imports only core/ (the all-in-one launcher is cli/serve.ts)',
  );

export default tseslint.config(
  {
    // Hidden folders hold local state (.data, device packs), never sources.
    ignores: ['dist/**', 'node_modules/**', 'bench/results/**', 'test/fixtures/**', '.*/**'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    // The playground page's script runs in the browser.
    files: ['api/public/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: {
        document: 'readonly',
        localStorage: 'readonly',
        fetch: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
      },
    },
  },
  {
    files: ['core/**/*.ts', 'api/**/*.ts', 'worker/**/*.ts', 'precompute/**/*.ts', 'cli/**/*.ts'],
    rules: {
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
    },
  },
  ...['api', 'worker', 'precompute'].map((d) => ({
    files: [`${d}/**/*.ts`],
    rules: { 'no-restricted-imports': ['error', deployableRule(d)] },
  })),
  {
    files: ['cli/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        importsOf(['bench', 'test', 'infra'], 'the CLI launches deployables, never tests or benchmarks'),
      ],
    },
  },
  {
    files: ['core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        importsOf(DEPLOYABLES, 'core/ is the library: it never imports a deployable'),
      ],
    },
  },
  {
    files: ['core/{storage,kv,model,util,runtime,config}/**/*.ts', 'core/errors.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        importsOf(
          ['documents', 'cache', 'inference', 'queue', 'blend', 'ops', 'eval', 'retrieval', ...DEPLOYABLES],
          'storage, kv, model, util, runtime and config are the foundation: they never import the layers above',
        ),
      ],
    },
  },
  {
    files: ['core/blend/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        importsOf(
          ['documents', 'cache', 'inference', 'queue', 'ops', 'eval', 'retrieval', ...DEPLOYABLES],
          'blend sits on model and kv only',
        ),
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', importsOf(['bench'], 'tests do not import benchmarks')] },
  },
);

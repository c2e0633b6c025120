"""Tests for tf_fedscale.tasks.registry and the task wiring of the experiment binaries:
options, models, default hyper-parameters, and missing-data errors."""

import os
import subprocess
import sys
import tempfile

from absl import flags
from absl.testing import absltest

from tf_fedscale.experiments import config_util
from tf_fedscale.experiments import setup
from tf_fedscale.experiments.configs import default as default_config
from tf_fedscale.tasks import registry

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class OptionsTest(absltest.TestCase):

  def test_parse_typed_options(self):
    options = registry.parse_options('cifar100', 'partition=dirichlet, alpha=0.3,crop=32')
    self.assertEqual((options['partition'], options['alpha'], options['crop']),
                     ('dirichlet', 0.3, 32))
    self.assertEqual(options['num_clients'], 500)   # untouched default
    self.assertEqual(registry.parse_options('synthetic', ''),
                     {'num_clients': 1000, 'alpha': 0.5, 'beta': 0.5, 'shared_model': False})

  def test_bad_options(self):
    with self.assertRaisesRegex(ValueError, "unknown option 'colour=red'.*crop"):
      registry.parse_options('cifar100', 'colour=red')
    with self.assertRaisesRegex(ValueError, "crop='big' is not a int"):
      registry.parse_options('cifar100', 'crop=big')
    with self.assertRaisesRegex(ValueError, 'unknown option'):
      registry.parse_options('femnist', 'seq_len=3')
    with self.assertRaisesRegex(ValueError, "option 'crop' has no value; write crop=VALUE"):
      registry.parse_options('cifar100', 'crop')

  def test_bad_names_models_and_sizes(self):
    with self.assertRaisesRegex(ValueError, "unknown task 'mnist'"):
      registry.build_task('mnist', '', 0)
    with self.assertRaisesRegex(ValueError, "'vgg' is not a model of task femnist"):
      registry.build_task('femnist', '', 0, model='vgg')
    with self.assertRaisesRegex(ValueError, 'fixed model'):
      registry.build_task('synthetic', '', 0, model='cnn')
    with self.assertRaisesRegex(ValueError, 'min_samples <= max_samples'):
      registry.build_task('synthetic', '', 0, min_samples=10, max_samples=5)

  def test_missing_data_names_files_place_and_publisher(self):
    empty = self.enterContext(tempfile.TemporaryDirectory())
    expectations = {
        'femnist': ('train/*.json', 'emnist_all.sqlite', 'client_data_mapping'),
        'emnist': ('emnist_all.sqlite', 'train/*.json'),
        'cifar100': ('cifar100.sqlite', 'tensorflow.org/datasets'),
        'shakespeare': ('shakespeare.sqlite', 'TalwalkarLab/leaf'),
        'stackoverflow_nwp': ('stackoverflow.sqlite', 'stackoverflow.word_count'),
        'stackoverflow_tag': ('stackoverflow.sqlite', 'tag_count'),
        'google_speech': ('client_data_mapping/train.csv', 'speech_commands_v0.02'),
        'openimage': ('client_data_mapping/test.csv', 'openimages'),
        'reddit': ('train/*.json', 'SymbioticLab/FedScale'),
        'amazon': ('data_path', 'SymbioticLab/FedScale'),
    }
    self.assertEqual(set(expectations) | {'synthetic', 'tfds'}, set(registry.TASKS))
    for name, needles in expectations.items():
      with self.subTest(name):
        with self.assertRaises(FileNotFoundError) as e:
          registry.build_task(name, empty, 0, cache_dir=empty)
        message = str(e.exception)
        self.assertIn(f'--data_dir={empty}', message)
        self.assertIn('published at', message)
        for needle in needles:
          self.assertIn(needle, message)
    with self.assertRaisesRegex(ValueError, 'name=<TFDS dataset> is required'):
      registry.build_task('tfds', empty, 0)
    with self.assertRaisesRegex(FileNotFoundError, 'tfds build mnist'):
      registry.build_task('tfds', empty, 0, options='name=mnist', cache_dir=empty)


class TaskDefaultsTest(absltest.TestCase):

  def test_defaults_are_valid_settings(self):
    base = default_config.get_config()
    for name, spec in registry.TASKS.items():
      with self.subTest(name):
        self.assertContainsSubset(set(spec.defaults), set(base))
        config = setup.apply_task_defaults(
            config_util.apply_overrides(base, {'task': name}), {'task'})
        config_util.validate(config, setup.choices())
        if spec.models:
          self.assertIn(config.model or spec.models[0], spec.models)

  def test_explicit_settings_win(self):
    base = config_util.apply_overrides(default_config.get_config(),
                                       {'task': 'femnist', 'client_lr': 0.2})
    config = setup.apply_task_defaults(base, {'task', 'client_lr'})
    self.assertEqual(config.client_lr, 0.2)
    self.assertEqual((config.local_steps, config.local_epochs, config.batch_size,
                      config.clients_per_round, config.min_samples), (5, 0, 20, 50, 21))
    speech = setup.apply_task_defaults(
        config_util.apply_overrides(base, {'task': 'google_speech'}), {'task'})
    self.assertEqual((speech.algorithm, speech.server_lr, speech.local_steps),
                     ('fedscale-yogi', 3e-3, 30))
    # Setting either amount of local work keeps the task's pair out.
    epochs = setup.apply_task_defaults(
        config_util.apply_overrides(base, {'local_epochs': 2, 'local_steps': 0}),
        {'task', 'local_epochs'})
    self.assertEqual((epochs.local_steps, epochs.local_epochs, epochs.batch_size), (0, 2, 20))
    unknown = config_util.apply_overrides(base, {'task': 'nope'})
    self.assertEqual(setup.apply_task_defaults(unknown, set()).to_dict(), unknown.to_dict())

  def test_fedscale_tasks_decay_the_client_rate_and_use_its_yogi_tau(self):
    # FedScale's config_parser.py: decay_factor 0.98, decay_round 10,
    # min_learning_rate 5e-5, yogi_tau 1e-8; TFF's tasks keep Reddi et al.'s.
    base = default_config.get_config()
    resolved = lambda **kv: setup.apply_task_defaults(
        config_util.apply_overrides(base, kv), set(kv))
    speech = resolved(task='google_speech')
    self.assertEqual((speech.client_lr_decay, speech.client_lr_decay_rounds,
                      speech.min_client_lr), (0.98, 10, 5e-5))
    self.assertEqual((speech.adaptive_epsilon, speech.adaptive_initial_accumulator),
                     (1e-8, 1e-8))
    cifar = resolved(task='cifar100')
    self.assertEqual((cifar.client_lr_decay, cifar.adaptive_epsilon), (1.0, 1e-3))
    # Constant-rate modes and algorithms do not inherit the decay.
    self.assertEqual(resolved(task='femnist', mode='async').client_lr_decay, 1.0)
    self.assertEqual(resolved(task='femnist', algorithm='fedprox').client_lr_decay, 1.0)
    self.assertEqual(resolved(task='femnist').client_lr_decay, 0.98)

  def test_fedscale_tasks_train_clients_with_its_sgd(self):
    # torch_client.py: SGD, momentum 0.9, weight decay 5e-4; its nlp tasks use
    # Adam instead, so reddit keeps plain SGD (README); TFF's tasks too.
    base = default_config.get_config()
    resolved = lambda **kv: setup.apply_task_defaults(
        config_util.apply_overrides(base, kv), set(kv))
    client_sgd = lambda c: (c.client_momentum, c.client_weight_decay)
    for task in ('femnist', 'google_speech', 'openimage', 'amazon'):
      self.assertEqual(client_sgd(resolved(task=task)), (0.9, 5e-4), task)
    for task in ('reddit', 'cifar100', 'synthetic'):
      self.assertEqual(client_sgd(resolved(task=task)), (0.0, 0.0), task)
    # Algorithms with their own client optimizer do not inherit it.
    self.assertEqual(client_sgd(resolved(task='femnist', algorithm='mime-lite')), (0.0, 0.0))

  def test_run_applies_defaults_under_flags(self):
    from tf_fedscale.experiments import run  # pylint: disable=g-import-not-at-top
    try:
      flags.FLAGS(['run', '--task=shakespeare', '--batch_size=7'])
      config = run.resolve_config()
    finally:
      flags.FLAGS.unparse_flags()
    self.assertEqual(config.batch_size, 7)                        # the flag
    self.assertEqual((config.client_lr, config.rounds), (1.0, 1200))   # task defaults
    self.assertEqual((config.local_steps, config.local_epochs), (0, 1))

  def test_run_exits_2_on_missing_data(self):
    root = self.enterContext(tempfile.TemporaryDirectory())
    out = os.path.join(root, 'out')
    result = subprocess.run(
        [sys.executable, '-m', 'tf_fedscale.experiments.run', '--task=google_speech',
         f'--data_dir={root}', f'--output_dir={out}', f'--cache_dir={root}'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    self.assertEqual(result.returncode, 2, result.stderr)
    errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
    self.assertLen(errors, 1)
    self.assertIn('--task/--data_dir: google_speech: data not found', errors[0])
    self.assertFalse(os.path.exists(out))


if __name__ == '__main__':
  absltest.main()

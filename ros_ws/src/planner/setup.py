"""ament_python package ``planner`` (Python module ``planner_ros``): installable with colcon on a
ROS 2 machine and with ``pip install -e ros_ws/src/planner`` elsewhere."""

from glob import glob

from setuptools import setup

PACKAGE = "planner"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=["planner_ros"],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="jepa-mpc maintainers",
    maintainer_email="maintainers@jepa-mpc.invalid",
    description="ROS 2 nodes for goal-image MPC on a latent world model (Franka Panda).",
    license="MIT",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "goal_planner = planner_ros.goal_planner:main",
            "mujoco_franka = planner_ros.mujoco_franka:main",
            "bringup = planner_ros.bringup:main",
        ],
    },
)
